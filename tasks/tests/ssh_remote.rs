//! tasks::ssh against real sshd nodes of the test cloud.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tasks::ssh::{HostKeys, Knock, LineSink, Remote, SshConfig, SshError, Stream};
use testkit::NodeInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Lines(Mutex<Vec<(Stream, String)>>);

impl LineSink for Lines {
    fn line(&self, stream: Stream, line: &str) {
        self.0.lock().unwrap().push((stream, line.to_string()));
    }
}

use common::{Fixture, fixture};

trait Nodes {
    async fn node(&self, name: &str) -> (Remote, NodeInfo);
}

impl Nodes for Fixture {
    async fn node(&self, name: &str) -> (Remote, NodeInfo) {
        let ip = self.create_server(name, "debian-12").await;
        let remote = Remote::wait_for(&self.cfg, name, &ip, Duration::from_secs(20))
            .await
            .unwrap();
        (remote, self.cloud.node(name).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_stream_lines_and_never_hide_a_failure() {
    let f = fixture(Duration::from_millis(300)).await;
    // The node is still booting: wait_for keeps trying until sshd answers.
    let (remote, node) = f.node("n1").await;
    let sink = Lines(Mutex::new(Vec::new()));
    let out = remote
        .run(
            "hostname; echo warn >&2; printf 'a\\nb\\n'",
            None,
            &sink,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "n1\na\nb\n");
    let lines = sink.0.lock().unwrap().clone();
    assert!(lines.contains(&(Stream::Stdout, "n1".into())));
    assert!(lines.contains(&(Stream::Stderr, "warn".into())));

    let err = remote
        .run(
            "echo starting; echo 'error: boom in node1.nix' >&2; exit 3",
            None,
            &sink,
            None,
        )
        .await
        .unwrap_err();
    match &err {
        SshError::Exit {
            node,
            code,
            stderr_tail,
            ..
        } => {
            assert_eq!((node.as_str(), *code), ("n1", 3));
            assert!(stderr_tail.contains("boom in node1.nix"), "{stderr_tail}");
        }
        other => panic!("expected an exit error, got {other}"),
    }
    assert!(!err.is_retryable());

    let slow = remote
        .run("sleep 5", None, &sink, Some(Duration::from_millis(200)))
        .await;
    assert!(matches!(slow, Err(SshError::Timeout { .. })), "{slow:?}");

    // Secrets go over stdin.
    remote
        .run(
            "umask 077; cat > /root/secret",
            Some(b"s3cr3t-value"),
            &sink,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(node.root.join("secret")).unwrap(),
        b"s3cr3t-value"
    );
    remote.close().await.unwrap();
}

fn tree(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    mode,
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_tree_reads_back_byte_for_byte_with_its_modes() {
    let f = fixture(Duration::ZERO).await;
    let (remote, node) = f.node("n1").await;
    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(local.path().join("app_modules/web")).unwrap();
    let files: [(&str, &[u8], u32); 3] = [
        ("configuration.nix", b"{ ... }: { }\n", 0o644),
        ("app_modules/web/action.sh", b"#!/bin/sh\necho hi\n", 0o755),
        (
            "app_modules/web/key.bin",
            &[0, 159, 146, 150, 255, 10],
            0o600,
        ),
    ];
    for (p, data, mode) in files {
        let path = local.path().join(p);
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    remote
        .upload_tree(local.path(), "/etc/nixos")
        .await
        .unwrap();
    assert_eq!(tree(&node.etc_nixos), tree(local.path()));
    remote
        .upload(b"token", "/run/keys/db", 0o400)
        .await
        .unwrap();
    let out = remote
        .run(
            "stat -c '%a' /run/keys/db",
            None,
            &tasks::ssh::Discard,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "400\n");
    remote.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_naming_both_fingerprints() {
    let f = fixture(Duration::ZERO).await;
    let (r1, n1) = f.node("n1").await;
    r1.close().await.unwrap();
    let known = std::fs::read_to_string(&f.cfg.known_hosts).unwrap();
    assert!(
        known.contains(n1.host_key.split_whitespace().nth(1).unwrap()),
        "first contact pinned the key"
    );
    let ip2 = f.create_server("n2", "debian-12").await;
    // Pretend n2's address used to be a machine with n1's key (a re-created node).
    std::fs::write(
        &f.cfg.known_hosts,
        format!("{known}{ip2} {}\n", n1.host_key),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let err = loop {
        match Remote::connect(&f.cfg, "n2", &ip2).await {
            Err(SshError::Unreachable { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => break e,
            Ok(_) => panic!("a changed host key must be refused"),
        }
    };
    match &err {
        SshError::HostKeyChanged {
            node,
            known,
            presented,
        } => {
            assert_eq!(node, "n2");
            assert!(
                known.starts_with("SHA256:") && presented.starts_with("SHA256:"),
                "{err}"
            );
            assert_ne!(known, presented);
        }
        other => panic!("expected HostKeyChanged, got {other}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_node_does_not_accept_fails_for_good_naming_login_and_key() {
    let f = fixture(Duration::ZERO).await;
    // The node is up and takes the cloud's key.
    let (r1, n1) = f.node("n1").await;
    r1.close().await.unwrap();
    let other = f.cfg.key.as_ref().unwrap().with_file_name("other");
    common::keygen(&other);
    let cfg = SshConfig {
        key: Some(other.clone()),
        control_dir: f.cfg.control_dir.join("other"),
        ..f.cfg.clone()
    };
    // However long the patience, a refusal ends the wait after the grace:
    // this test would hang for ten minutes if it were retried as a node
    // that is not up yet.
    let err = match Remote::wait_for(&cfg, "n1", &n1.ip.to_string(), Duration::from_secs(600)).await
    {
        Err(e) => e,
        Ok(_) => panic!("a key the node does not know must be refused"),
    };
    match &err {
        SshError::AuthRefused {
            node, user, key, ..
        } => {
            assert_eq!((node.as_str(), user.as_str()), ("n1", "root"));
            assert!(key.contains(&other.display().to_string()), "{err}");
        }
        other => panic!("expected AuthRefused, got {other}"),
    }
    assert!(err.to_string().contains("Permission denied"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarding_reaches_a_service_behind_the_node() {
    let f = fixture(Duration::ZERO).await;
    let (remote, _) = f.node("n1").await;
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote_addr = service.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = service.accept().await.unwrap();
        s.write_all(b"etcd says hi").await.unwrap();
    });
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::free_port().unwrap()));
    remote.forward(local, remote_addr).await.unwrap();
    let mut conn = tokio::net::TcpStream::connect(local).await.unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "etcd says hi");
    remote.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_renders_installs_rebuilds_and_reports_nix_errors() {
    use std::collections::BTreeMap;
    use tasks::nixos::{self, BootstrapError};
    let f = fixture(Duration::ZERO).await;
    let (remote, node) = f.node("boot1").await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("modules")).unwrap();
    std::fs::write(
        repo.path().join("configuration.nix"),
        "{ ... }: {\n  imports = [ ./modules/base.nix ];\n  networking.hostName = \"[%%hostname%%]\";\n}\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("modules/base.nix"),
        "{ ... }: { networking.extraHosts = \"[%%ip%%] [%%hostname%%]\"; }\n",
    )
    .unwrap();

    // A placeholder that cannot be filled: every missing key of every file, nothing uploaded.
    let partial = BTreeMap::from([("hostname".to_string(), "boot1".to_string())]);
    let err = nixos::push_config(&remote, repo.path(), &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BootstrapError::MissingKeys(m) if m.len() == 1),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "missing values for placeholders: modules/base.nix: ip"
    );
    assert!(!node.etc_nixos.join("configuration.nix").exists());

    let vars = BTreeMap::from([
        ("hostname".to_string(), "boot1".to_string()),
        ("ip".to_string(), node.ip.to_string()),
    ]);
    let sink = tasks::ssh::Discard;
    // NixOS the way a provision installs it: the cloud's installer, then a reboot.
    let installer = tasks::install::Installer::from_vars(
        Some(f.cloud.installer_url()),
        Some(f.cloud.installer_sha256().into()),
    )
    .unwrap();
    tasks::install::install(&remote, &installer, "nixos-24.11", &sink)
        .await
        .unwrap();
    let ip = node.ip.to_string();
    let remote = tasks::install::reboot(&remote, &f.cfg, &ip, Duration::from_secs(30), &sink)
        .await
        .unwrap()
        .remote;
    nixos::push_config(&remote, repo.path(), &vars)
        .await
        .unwrap();
    let rendered = std::fs::read_to_string(node.etc_nixos.join("modules/base.nix")).unwrap();
    assert_eq!(
        rendered,
        format!(
            "{{ ... }}: {{ networking.extraHosts = \"{} boot1\"; }}\n",
            node.ip
        )
    );
    nixos::rebuild(&remote, &sink).await.unwrap();
    assert!(nixos::verify(&remote).await.unwrap().contains("Vicuna"));

    // A bad .nix file fails the rebuild with the parser's message.
    std::fs::write(
        repo.path().join("modules/base.nix"),
        "{ ... }: { broken = ; }\n",
    )
    .unwrap();
    nixos::push_config(&remote, repo.path(), &vars)
        .await
        .unwrap();
    let err = nixos::rebuild(&remote, &sink).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exited with 1") && text.contains("syntax error"),
        "{text}"
    );
    assert!(text.contains("/etc/nixos/modules/base.nix"), "{text}");
    remote.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_nodes_on_stdin_encrypted_and_are_pruned() {
    use age::secrecy::{ExposeSecret, SecretSlice};
    use tasks::deploy;
    use tasks::secrets::{SecretKey, SecretStore, write_identity};
    let f = fixture(Duration::ZERO).await;
    let (remote, node) = f.node("sec1").await;
    // Audit every command line that reaches systemd-creds on the node.
    let audit =
        "#!/bin/sh\necho \"$0 $*\" >> /var/lib/argv.log\nexec /usr/bin/systemd-creds \"$@\"\n";
    remote
        .upload(audit.as_bytes(), "/usr/local/sbin/systemd-creds", 0o755)
        .await
        .unwrap();

    let value = format!("pw-{}", std::process::id());
    deploy::deploy_secret(
        &remote,
        "db",
        &SecretSlice::from(value.clone().into_bytes()),
    )
    .await
    .unwrap();
    deploy::deploy_secret(&remote, "old", &SecretSlice::from(b"stale".to_vec()))
        .await
        .unwrap();
    let stored = std::fs::read(node.root.join("secrets/db")).unwrap();
    assert!(
        !stored.windows(value.len()).any(|w| w == value.as_bytes()),
        "encrypted on the node"
    );
    let mode = std::fs::metadata(node.root.join("secrets"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let out = remote
        .run(
            "systemd-creds decrypt --name=db /root/secrets/db -",
            None,
            &tasks::ssh::Discard,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, value);
    let argv = std::fs::read_to_string(node.var_lib.join("argv.log")).unwrap();
    assert!(argv.contains("encrypt --name=db"), "{argv}");
    assert!(
        !argv.contains(&value),
        "the value never travels in argv: {argv}"
    );

    let removed = deploy::prune_secrets(&remote, &["db".to_string()])
        .await
        .unwrap();
    assert_eq!(removed, vec!["old".to_string()]);
    assert!(node.root.join("secrets/db").exists() && !node.root.join("secrets/old").exists());

    // A remote command's stdout becomes a secret without being printed.
    let dir = tempfile::tempdir().unwrap();
    write_identity(&dir.path().join("id")).unwrap();
    let store = SecretStore::new(
        dir.path().join("secrets"),
        SecretKey::load_identity(&dir.path().join("id")).unwrap(),
    );
    deploy::save_output_as_secret(&remote, "echo generated-token-42", None, &store, "token")
        .await
        .unwrap();
    assert_eq!(
        store.get("token").unwrap().expose_secret(),
        b"generated-token-42"
    );
    remote.close().await.unwrap();
}

/// A node expected up is reached with one connection: SSH first, and a knock
/// on its port only after a failure. A knock that finds the port open is a
/// connection sshd forks for, so a reboot's wait (knocking first) pays one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_up_is_reached_without_a_knock() {
    let f = fixture(Duration::ZERO).await;
    let (first, info) = f.node("n1").await;
    first.close().await.unwrap();
    let relay = common::relay::Relay::start((info.ip, 22).into()).await;
    let cfg = SshConfig {
        port: relay.port,
        ..f.cfg.clone()
    };
    let patience = Duration::from_secs(20);
    let r = Remote::wait_for(&cfg, "n1", "127.0.0.1", patience)
        .await
        .unwrap();
    assert_eq!((relay.connections(), relay.key_exchanges()), (1, 1));
    r.close().await.unwrap();
    let r = Remote::wait_for_with(
        &cfg,
        "n1",
        "127.0.0.1",
        patience,
        HostKeys::Pinned,
        Knock::First,
    )
    .await
    .unwrap();
    assert_eq!(
        (relay.connections(), relay.key_exchanges()),
        (3, 2),
        "a knock, then SSH (the key pinned on this port)"
    );
    r.close().await.unwrap();
}
