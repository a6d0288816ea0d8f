//! Real etcd: plain for unit tests, and mutual TLS on a node-style loopback address.

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::net::Ipv4Addr;
use std::time::Duration;
use testkit::{Etcd, EtcdTls};

/// A CA, and a function to issue certificates from it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// (cert PEM, key PEM) for `names` (DNS names or IPs).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn tls_client(
    endpoint: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> Result<Client, etcd_client::Error> {
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key));
    let opts = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    Client::connect([endpoint], Some(opts)).await
}

#[tokio::test]
async fn plain_etcd_for_unit_tests() {
    let etcd = Etcd::start_plain().unwrap();
    let mut client = Client::connect([etcd.endpoint()], None).await.unwrap();
    client.put("/cluster/nodes/a", "{}", None).await.unwrap();
    let got = client.get("/cluster/nodes/a", None).await.unwrap();
    assert_eq!(got.kvs()[0].value_str().unwrap(), "{}");
}

#[tokio::test]
async fn etcd_over_mutual_tls_refuses_a_foreign_certificate() {
    let ca = Ca::new("nix-infra test CA");
    // A node-style address, as a control node's etcd would have.
    let ip = Ipv4Addr::new(127, 0, 77, 1);
    let (server_cert, server_key) = ca.issue(&[&ip.to_string(), "127.0.0.1"]);
    let etcd = Etcd::start_tls(
        ip,
        &EtcdTls {
            ca_pem: ca.pem.clone(),
            cert_pem: server_cert,
            key_pem: server_key,
        },
    )
    .unwrap();
    assert!(etcd.endpoint().starts_with("https://127.0.77.1:"));

    let (cert, key) = ca.issue(&["orchestrator"]);
    let mut client = tls_client(etcd.endpoint(), &ca.pem, &cert, &key)
        .await
        .unwrap();
    client
        .put("/cluster/nodes/worker1", r#"{"name":"worker1"}"#, None)
        .await
        .unwrap();
    let got = client.get("/cluster/nodes/worker1", None).await.unwrap();
    assert_eq!(got.kvs()[0].value_str().unwrap(), r#"{"name":"worker1"}"#);

    // A certificate from another CA is refused.
    let rogue = Ca::new("someone else");
    let (cert, key) = rogue.issue(&["intruder"]);
    let refused = match tls_client(etcd.endpoint(), &ca.pem, &cert, &key).await {
        Err(_) => true,
        Ok(mut c) => c.get("/cluster/nodes/worker1", None).await.is_err(),
    };
    assert!(
        refused,
        "a client certificate from another CA must be refused"
    );
}

#[test]
fn harness_processes_end_with_their_handles() {
    let pg = testkit::Postgres::start().unwrap();
    let etcd = Etcd::start_plain().unwrap();
    let pids = [pg.pid(), etcd.pid()];
    assert!(
        pids.iter()
            .all(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    );
    drop(pg);
    drop(etcd);
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} survived its handle"
        );
    }
}
