//! age-encrypted secrets and the cluster CA, with real etcd checking the certificates.

use age::secrecy::{ExposeSecret, SecretSlice, SecretString};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tasks::ca::Ca;
use tasks::secrets::{SecretError, SecretKey, SecretStore, write_identity};
use testkit::{Etcd, EtcdTls};

fn identity(dir: &std::path::Path, name: &str) -> SecretKey {
    let path = dir.join(name);
    write_identity(&path).unwrap();
    SecretKey::load_identity(&path).unwrap()
}

fn secret(s: &str) -> SecretSlice<u8> {
    SecretSlice::from(s.as_bytes().to_vec())
}

#[test]
fn secrets_are_encrypted_versioned_and_open_only_with_the_right_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::new(dir.path().join("secrets"), identity(dir.path(), "id.key"));
    assert!(
        write_identity(&dir.path().join("id.key")).is_err(),
        "init never overwrites an identity"
    );
    store.store("db-password", &secret("hunter2-v1")).unwrap();
    assert_eq!(
        store.get("db-password").unwrap().expose_secret(),
        b"hunter2-v1"
    );

    // On disk: no plaintext, private modes.
    let file = dir.path().join("secrets/db-password/v1.age");
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Another identity cannot read it, and says so without the value.
    let other = SecretStore::new(
        dir.path().join("secrets"),
        identity(dir.path(), "other.key"),
    );
    let err = other.get("db-password").unwrap_err();
    assert!(matches!(err, SecretError::WrongKey { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"));

    // Rotation: the old version stays current until the new one is confirmed.
    let v2 = store.stage("db-password", &secret("hunter2-v2")).unwrap();
    assert_eq!(v2, 2);
    assert_eq!(
        store.get("db-password").unwrap().expose_secret(),
        b"hunter2-v1"
    );
    assert_eq!(
        store.get_version("db-password", 2).unwrap().expose_secret(),
        b"hunter2-v2"
    );
    let listed = store.list().unwrap();
    assert_eq!((listed[0].current, listed[0].pending), (Some(1), Some(2)));
    store.confirm("db-password").unwrap();
    assert_eq!(
        store.get("db-password").unwrap().expose_secret(),
        b"hunter2-v2"
    );
    assert!(
        !dir.path().join("secrets/db-password/v1.age").exists(),
        "the old version is retired"
    );
    assert!(matches!(
        store.confirm("db-password"),
        Err(SecretError::NothingStaged(_))
    ));

    store.remove("db-password").unwrap();
    assert!(matches!(
        store.get("db-password"),
        Err(SecretError::NotFound(_))
    ));
    assert!(matches!(
        store.store("../escape", &secret("x")),
        Err(SecretError::BadName(_))
    ));
}

#[test]
fn a_passphrase_store_opens_with_that_passphrase_only() {
    let dir = tempfile::tempdir().unwrap();
    let pass = |p: &str| SecretKey::Passphrase(SecretString::from(p.to_string()));
    let store = SecretStore::new(dir.path(), pass("correct horse"));
    store.store("api-token", &secret("tok-123")).unwrap();
    assert_eq!(store.get("api-token").unwrap().expose_secret(), b"tok-123");
    let wrong = SecretStore::new(dir.path(), pass("wrong horse"));
    assert!(matches!(
        wrong.get("api-token"),
        Err(SecretError::WrongKey { .. })
    ));
    let with_identity = SecretStore::new(dir.path(), identity(dir.path(), "id.key"));
    assert!(matches!(
        with_identity.get("api-token"),
        Err(SecretError::WrongKey { .. })
    ));
}

async fn etcd_client(
    endpoint: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> Result<Client, etcd_client::Error> {
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key));
    Client::connect(
        [endpoint],
        Some(
            ConnectOptions::new()
                .with_tls(tls)
                .with_timeout(Duration::from_secs(5)),
        ),
    )
    .await
}

#[tokio::test]
async fn the_cluster_ca_secures_etcd_and_revokes_a_recreated_nodes_old_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(&dir.path().join("ca"), identity(dir.path(), "id.key"), "c1").unwrap();
    assert!(
        Ca::init(
            &dir.path().join("ca"),
            identity(dir.path(), "id2.key"),
            "c1"
        )
        .is_err(),
        "never overwrites"
    );
    let root_key = std::fs::read(dir.path().join("ca/root.key.age")).unwrap();
    assert!(
        !root_key.windows(11).any(|w| w == b"PRIVATE KEY"),
        "CA keys are encrypted at rest"
    );

    let ip1 = Ipv4Addr::new(127, 0, 91, 1);
    let first = ca.node("ctrl1", IpAddr::V4(ip1)).unwrap();
    assert_eq!(
        ca.node("ctrl1", IpAddr::V4(ip1)).unwrap().peer.serial,
        first.peer.serial,
        "idempotent"
    );

    // etcd on the node's address with the node's peer certificate.
    let etcd = Etcd::start_tls(
        ip1,
        &EtcdTls {
            ca_pem: ca.root_pem().to_string(),
            cert_pem: first.peer.cert_pem.clone(),
            key_pem: first.peer.key_pem.expose_secret().to_string(),
        },
    )
    .unwrap();
    let me = ca.orchestrator().unwrap();
    let mut client = etcd_client(
        etcd.endpoint(),
        ca.root_pem(),
        &me.cert_pem,
        me.key_pem.expose_secret(),
    )
    .await
    .unwrap();
    client
        .put("/cluster/nodes/ctrl1", "{}", None)
        .await
        .unwrap();

    // Another cluster's CA is refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Ca::init(other_dir.path(), identity(other_dir.path(), "id.key"), "c2").unwrap();
    let stranger = other.orchestrator().unwrap();
    let refused = match etcd_client(
        etcd.endpoint(),
        ca.root_pem(),
        &stranger.cert_pem,
        stranger.key_pem.expose_secret(),
    )
    .await
    {
        Err(_) => true,
        Ok(mut c) => c.get("/cluster/nodes/ctrl1", None).await.is_err(),
    };
    assert!(refused, "a certificate from another CA must be refused");

    // Re-created with a new IP: new certificates, the old ones revoked and in the CRL.
    let second = ca
        .node("ctrl1", IpAddr::V4(Ipv4Addr::new(127, 0, 91, 2)))
        .unwrap();
    assert_ne!(second.peer.serial, first.peer.serial);
    let revoked = ca.revoked();
    assert!(
        revoked.contains(&first.peer.serial) && revoked.contains(&first.client.serial),
        "{revoked:?}"
    );
    assert!(!revoked.contains(&second.peer.serial));
    assert!(
        std::fs::read_to_string(dir.path().join("ca/crl.pem"))
            .unwrap()
            .contains("BEGIN X509 CRL")
    );
    assert_eq!(
        ca.revoke_node("ctrl1").unwrap(),
        2,
        "destroy revokes what is left"
    );
}

#[test]
fn concurrent_certificate_generation_needs_no_locks() {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id.key");
    write_identity(&id).unwrap();
    Ca::init(
        &dir.path().join("ca"),
        SecretKey::load_identity(&id).unwrap(),
        "c1",
    )
    .unwrap();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    // Eight processes' worth of workers race for the same node, and for different nodes.
    let serials: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (dir, id) = (dir.path().to_path_buf(), id.clone());
                s.spawn(move || {
                    let ca =
                        Ca::load(&dir.join("ca"), SecretKey::load_identity(&id).unwrap()).unwrap();
                    let shared = ca.node("web1", ip).unwrap().peer.serial;
                    let own = ca.node(&format!("n{i}"), ip).unwrap().peer.serial;
                    (shared, own)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = &serials[0].0;
    assert!(
        serials.iter().all(|(s, _)| s == first),
        "everyone ends with the winner's certificate"
    );
    let mut own: Vec<&String> = serials.iter().map(|(_, o)| o).collect();
    own.sort();
    own.dedup();
    assert_eq!(own.len(), 8);
    let ca = Ca::load(
        &dir.path().join("ca"),
        SecretKey::load_identity(&id).unwrap(),
    )
    .unwrap();
    assert!(ca.revoked().is_empty(), "a lost race revokes nothing");
    let leftovers = std::fs::read_dir(dir.path().join("ca/nodes"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".issuing"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn the_dart_tools_openssl_ca_issues_certificates_its_chain_verifies() {
    let repo = tempfile::tempdir().unwrap();
    testkit::dart::make_ca(repo.path(), "ca-pass-7");
    let dart = tasks::dart_ca::DartCa::find(&repo.path().join("ca")).expect("a Dart CA");
    let wrong = dart
        .open_key(&"nope".to_string().into())
        .err()
        .unwrap()
        .to_string();
    assert!(wrong.contains("INTERMEDIATE_CA_PASS"), "{wrong}");
    let key_pem = dart.open_key(&"ca-pass-7".to_string().into()).unwrap();
    let state = repo.path().join(".nix-infra/ca");
    let id = tasks::secrets::SecretKey::Identity(Box::new(age::x25519::Identity::generate()));
    let before = list(&repo.path().join("ca"));
    let ca = tasks::ca::Ca::load_dart(&dart, &key_pem, &state, id).unwrap();
    let certs = ca.node("etcd001", "127.0.0.1".parse().unwrap()).unwrap();
    let me = ca.orchestrator().unwrap();
    assert_eq!(
        list(&repo.path().join("ca")),
        before,
        "nothing written under the Dart ca/"
    );
    let chain = repo.path().join("ca/intermediate/certs/ca-chain.cert.pem");
    for (what, pem) in [
        ("client", &certs.client.cert_pem),
        ("peer", &certs.peer.cert_pem),
        ("orchestrator", &me.cert_pem),
    ] {
        let leaf = repo.path().join(format!("{what}.pem"));
        std::fs::write(&leaf, pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&chain)
            .arg(&leaf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn list(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(list(&p));
        } else {
            out.push(format!(
                "{} {}",
                p.display(),
                std::fs::metadata(&p).unwrap().len()
            ));
        }
    }
    out.sort();
    out
}
