//! The etcd registry in nix-infra's data model, on real etcd (plain and mutual TLS).

use age::secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use tasks::ca::Ca;
use tasks::registry::{AppKind, AppMeta, Instance, NodeEntry, Publish, Registry, RegistryTls};
use tasks::secrets::{SecretKey, write_identity};
use testkit::{Etcd, EtcdTls};

#[tokio::test]
async fn round_trips_produce_exactly_the_seeds_json() {
    let etcd = Etcd::start_plain().unwrap();
    let reg = Registry::connect(&[etcd.endpoint().to_string()], None)
        .await
        .unwrap();
    let node = NodeEntry {
        name: "worker1".into(),
        ipv4: "10.0.0.2".into(),
        services: vec!["web".into()],
    };
    reg.register_node(&node).await.unwrap();
    reg.register_node(&node).await.unwrap(); // repeatable
    let raw = reg.raw("/cluster/").await.unwrap();
    assert_eq!(
        raw["/cluster/nodes/worker1"],
        r#"{"name":"worker1","ipv4":"10.0.0.2","services":["web"]}"#
    );
    assert_eq!(reg.nodes().await.unwrap(), vec![node]);

    let meta = AppMeta {
        publish: Publish { port: 8080 },
        env_prefix: "WEB".into(),
        env: BTreeMap::from([("MODE".to_string(), "prod".to_string())]),
    };
    reg.register_app(AppKind::Backend, "web", &meta)
        .await
        .unwrap();
    for n in ["worker1", "worker2"] {
        let inst = Instance {
            node: n.into(),
            ipv4: format!("10.0.0.{}", &n[6..]),
            port: 8080,
        };
        reg.register_instance(AppKind::Backend, "web", &inst)
            .await
            .unwrap();
    }
    let raw = reg.raw("/cluster/backends/").await.unwrap();
    assert_eq!(
        raw["/cluster/backends/web/meta_data"],
        r#"{"publish":{"port":8080},"env_prefix":"WEB","env":{"MODE":"prod"}}"#
    );
    assert_eq!(
        raw["/cluster/backends/web/instances/worker2"],
        r#"{"node":"worker2","ipv4":"10.0.0.2","port":8080}"#
    );
    let apps = reg.apps(AppKind::Backend).await.unwrap();
    assert_eq!(apps["web"].meta.as_ref(), Some(&meta));
    assert_eq!(apps["web"].instances.len(), 2);
    assert!(reg.apps(AppKind::Frontend).await.unwrap().is_empty());

    reg.unregister_instance(AppKind::Backend, "web", "worker1")
        .await
        .unwrap();
    reg.unregister_instance(AppKind::Backend, "web", "worker1")
        .await
        .unwrap(); // missing: fine
    assert_eq!(
        reg.apps(AppKind::Backend).await.unwrap()["web"]
            .instances
            .len(),
        1
    );
    // Unregistering an app removes its meta_data too (the seed never did).
    reg.unregister_app(AppKind::Backend, "web").await.unwrap();
    assert!(reg.raw("/cluster/backends/").await.unwrap().is_empty());
    reg.unregister_node("worker1").await.unwrap();
    reg.unregister_node("worker1").await.unwrap();
    assert!(reg.raw("/cluster/").await.unwrap().is_empty());

    // flannel's lease tells a node's overlay address.
    reg.put_raw(
        "/coreos.com/network/subnets/10.100.23.0-24",
        r#"{"PublicIP":"10.0.0.2","BackendType":"wireguard"}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        reg.overlay_ip("10.0.0.2").await.unwrap().as_deref(),
        Some("10.100.23.0")
    );
    assert_eq!(reg.overlay().await.unwrap()[0].subnet, "10.100.23.0/24");
    assert_eq!(reg.overlay_ip("10.0.0.9").await.unwrap(), None);
}

#[tokio::test]
async fn over_mutual_tls_a_foreign_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let p = dir.path().join(name);
        write_identity(&p).unwrap();
        SecretKey::load_identity(&p).unwrap()
    };
    let ca = Ca::init(&dir.path().join("ca"), key("a.key"), "c1").unwrap();
    let ip = Ipv4Addr::new(127, 0, 93, 1);
    let certs = ca.node("ctrl1", IpAddr::V4(ip)).unwrap();
    let etcd = Etcd::start_tls(
        ip,
        &EtcdTls {
            ca_pem: ca.root_pem().into(),
            cert_pem: certs.peer.cert_pem.clone(),
            key_pem: certs.peer.key_pem.expose_secret().into(),
        },
    )
    .unwrap();
    let me = ca.orchestrator().unwrap();
    let tls = RegistryTls {
        ca_pem: ca.root_pem().into(),
        cert_pem: me.cert_pem.clone(),
        key_pem: me.key_pem.expose_secret().into(),
    };
    let reg = Registry::connect(&[etcd.endpoint().to_string()], Some(&tls))
        .await
        .unwrap();
    reg.register_node(&NodeEntry {
        name: "ctrl1".into(),
        ipv4: ip.to_string(),
        services: vec![],
    })
    .await
    .unwrap();
    assert_eq!(reg.nodes().await.unwrap().len(), 1);

    let other = Ca::init(&dir.path().join("other"), key("b.key"), "c2").unwrap();
    let them = other.orchestrator().unwrap();
    let bad = RegistryTls {
        ca_pem: ca.root_pem().into(),
        cert_pem: them.cert_pem.clone(),
        key_pem: them.key_pem.expose_secret().into(),
    };
    assert!(
        Registry::connect(&[etcd.endpoint().to_string()], Some(&bad))
            .await
            .is_err()
    );
}
