//! The etcd registry in nix-infra's data model, on real etcd (plain and mutual TLS).

use age::secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use tasks::ca::Ca;
use tasks::registry::{
    AppKind, AppMeta, EnvValue, Instance, NodeEntry, Publish, Registry, RegistryTls,
};
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
        publish: Publish { port: Some(8080) },
        env_prefix: "WEB".into(),
        env: BTreeMap::from([("MODE".to_string(), "prod".into())]),
    };
    reg.register_app(AppKind::Backend, "web", &meta)
        .await
        .unwrap();
    for n in ["worker1", "worker2"] {
        let inst = Instance {
            node: n.into(),
            ipv4: format!("10.0.0.{}", &n[6..]),
            port: Some(8080),
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

/// A CA made with a fresh identity in `dir`.
fn new_ca(dir: &std::path::Path, name: &str) -> Ca {
    let key = dir.join(format!("{name}.key"));
    write_identity(&key).unwrap();
    let key = SecretKey::load_identity(&key).unwrap();
    Ca::init(&dir.join(name), key, name).unwrap()
}

/// etcd on `ip` requiring certificates of `ca`, and the orchestrator's TLS material.
fn tls_etcd(ca: &Ca, ip: Ipv4Addr) -> (Etcd, RegistryTls) {
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
    (etcd, tls)
}

#[tokio::test]
async fn over_mutual_tls_a_foreign_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "c1");
    let ip = Ipv4Addr::new(127, 0, 93, 1);
    let (etcd, tls) = tls_etcd(&ca, ip);
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

    let other = new_ca(dir.path(), "c2");
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

/// What the Dart-era templates' units put (`builtins.toJSON`, keys sorted):
/// integer and null env values, a null port.
const MEMCACHED_META: &str = r#"{"env":{"HOST":"127.0.0.1","PATH":"/x","PORT":11211,"PROTOCOL":"tcp"},"env_prefix":"MEMCACHED","publish":{"port":11211}}"#;
const PORTLESS_META: &str = r#"{"env":{"HOST":"127.0.0.1","PATH":"","PORT":null,"PROTOCOL":"http"},"env_prefix":"WORKER","publish":{"port":null}}"#;

#[tokio::test]
async fn app_entries_as_the_dart_templates_write_them_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "c1");
    let (etcd, tls) = tls_etcd(&ca, Ipv4Addr::new(127, 0, 93, 2));
    let reg = Registry::connect(&[etcd.endpoint().to_string()], Some(&tls))
        .await
        .unwrap();
    for (key, value) in [
        ("/cluster/services/memcached/meta_data", MEMCACHED_META),
        (
            "/cluster/services/memcached/instances/service001",
            r#"{"ipv4":"10.10.45.0","node":"service001","port":11211}"#,
        ),
        ("/cluster/services/worker/meta_data", PORTLESS_META),
        (
            "/cluster/services/worker/instances/service002",
            r#"{"ipv4":"10.10.46.0","node":"service002","port":null}"#,
        ),
        (
            "/cluster/nodes/service001",
            r#"{"name":"service001","ipv4":"65.21.1.2","services":["services","backends"]}"#,
        ),
    ] {
        reg.put_raw(key, value).await.unwrap();
    }

    let apps = reg.apps(AppKind::Service).await.unwrap();
    let memcached = apps["memcached"].meta.as_ref().unwrap();
    assert_eq!(memcached.publish.port, Some(11211));
    assert_eq!(memcached.env_prefix, "MEMCACHED");
    assert_eq!(memcached.env["PORT"], EnvValue::Int(11211));
    assert_eq!(memcached.env["HOST"], EnvValue::from("127.0.0.1"));
    assert_eq!(
        memcached.env_text(),
        BTreeMap::from(
            [
                ("HOST", "127.0.0.1"),
                ("PATH", "/x"),
                ("PORT", "11211"),
                ("PROTOCOL", "tcp")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        )
    );
    assert_eq!(
        apps["memcached"].instances["service001"],
        Instance {
            node: "service001".into(),
            ipv4: "10.10.45.0".into(),
            port: Some(11211),
        }
    );
    let worker = apps["worker"].meta.as_ref().unwrap();
    assert_eq!(worker.publish.port, None);
    assert_eq!(worker.env["PORT"], EnvValue::Null);
    assert!(!worker.env_text().contains_key("PORT"));
    assert_eq!(apps["worker"].instances["service002"].port, None);
    assert_eq!(
        reg.nodes().await.unwrap()[0].services,
        vec!["services".to_string(), "backends".to_string()]
    );

    // Written back, the values keep their JSON types (null included).
    reg.register_app(AppKind::Backend, "worker", worker)
        .await
        .unwrap();
    let raw = reg.raw("/cluster/backends/").await.unwrap();
    let back: serde_json::Value =
        serde_json::from_str(&raw["/cluster/backends/worker/meta_data"]).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(PORTLESS_META).unwrap()
    );

    // A value Nix would not write for an env is refused, naming the key.
    reg.put_raw(
        "/cluster/frontends/odd/meta_data",
        r#"{"env":{"RATIO":0.5},"env_prefix":"ODD","publish":{"port":1}}"#,
    )
    .await
    .unwrap();
    let e = reg.apps(AppKind::Frontend).await.unwrap_err().to_string();
    assert!(
        e.contains("/cluster/frontends/odd/meta_data")
            && e.contains("expected a string, an integer, a boolean or null"),
        "{e}"
    );
}
