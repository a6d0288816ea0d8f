//! tasks::install on sandbox nodes that start as Hetzner's stock image:
//! the installer is fetched and checked on the node, and the reboot keeps the
//! pinned host key (or fails loudly when it does not).

mod common;

use common::Fixture;
use std::sync::Mutex;
use std::time::Duration;
use tasks::install::{InstallError, Installer};
use tasks::ssh::{Discard, LineSink, Remote, SshError, Stream};

struct Lines(Mutex<Vec<String>>);

impl LineSink for Lines {
    fn line(&self, _: Stream, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

async fn fixture() -> Fixture {
    common::fixture(testkit::CloudConfig::default().boot_delay).await
}

impl Fixture {
    /// A server from the stock image, connected (first contact pins its key); returns its address too.
    async fn node(&self, name: &str) -> (Remote, String) {
        let ip = self.create(name).await;
        let r = Remote::wait_for(&self.cfg, name, &ip, Duration::from_secs(20))
            .await
            .unwrap();
        (r, ip)
    }

    /// Creates a server from the stock image; returns its address.
    async fn create(&self, name: &str) -> String {
        self.create_server(name, "ubuntu-24.04").await
    }

    fn installer(&self) -> Installer {
        Installer::from_vars(
            Some(self.cloud.installer_url()),
            Some(self.cloud.installer_sha256().into()),
        )
        .unwrap()
    }
}

/// Whether `path` exists on the node.
async fn exists(r: &Remote, path: &str) -> bool {
    r.run(&format!("test -e {path}"), None, &Discard, None)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installer_is_checked_run_and_booted_into_with_the_pinned_host_key() {
    let f = fixture().await;
    let (r, ip) = f.node("n1").await;
    assert!(tasks::nixos::verify(&r).await.is_err(), "a stock image");
    let lines = Lines(Mutex::new(Vec::new()));
    tasks::install::install(&r, &f.installer(), "nixos-24.11", &lines)
        .await
        .unwrap();
    let log = lines.0.lock().unwrap().join("\n");
    assert!(
        log.contains("installing nixos-24.11 for hetznercloud"),
        "{log}"
    );
    assert!(
        tasks::nixos::verify(&r).await.is_err(),
        "NO_REBOOT: the new system waits for the reboot"
    );
    assert!(exists(&r, "/etc/nixos/hardware-configuration.nix").await);

    let before = tasks::install::boot_id(&r).await.unwrap();
    let pinned = tasks::ssh::pinned_fingerprint(&f.cfg.known_hosts, &ip, 22)
        .await
        .unwrap();
    let back = tasks::install::reboot(&r, &f.cfg, &ip, Duration::from_secs(30), &Discard)
        .await
        .unwrap();
    assert_ne!(back.boot_id, before);
    assert_eq!(back.host_key, pinned);
    assert_eq!(
        tasks::ssh::pinned_fingerprint(&f.cfg.known_hosts, &ip, 22)
            .await
            .as_deref(),
        Some(pinned.as_str()),
        "known_hosts still pins the one key"
    );
    let version = tasks::nixos::verify(&back.remote).await.unwrap();
    assert_eq!(version, "24.11.20241201.0000000 (Vicuna)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_and_reboot_leave_a_node_that_runs_nixos_alone() {
    let f = fixture().await;
    let (r, ip) = f.node("n1").await;
    let installed = tasks::install::install(&r, &f.installer(), "nixos-24.11", &Discard)
        .await
        .unwrap();
    assert_eq!(installed, tasks::install::Outcome::Installed);
    let before = tasks::install::boot_id(&r).await.unwrap();
    let lines = Lines(Mutex::new(Vec::new()));
    let boot = tasks::install::reboot_into_nixos(&r, &f.cfg, &ip, Duration::from_secs(30), &lines)
        .await
        .unwrap();
    let back = match boot {
        tasks::install::Boot::Rebooted(back) => back,
        tasks::install::Boot::AlreadyNixos(v) => panic!("a stock image said NixOS {v}"),
    };
    assert_ne!(back.boot_id, before, "a new boot");
    let log = lines.0.lock().unwrap().join("\n");
    assert!(!log.contains(&before), "the boot id is not logged: {log}");
    // Now on NixOS: neither step touches the node again.
    let again = tasks::install::install(&back.remote, &f.installer(), "nixos-24.11", &Discard)
        .await
        .unwrap();
    assert_eq!(
        again,
        tasks::install::Outcome::AlreadyNixos("24.11.20241201.0000000 (Vicuna)".into())
    );
    // The installer ran once: the stand-in records each run.
    let runs = back
        .remote
        .run(
            "grep -c ' infect ' /var/lib/nixos-standin/generations",
            None,
            &Discard,
            None,
        )
        .await
        .unwrap();
    assert_eq!(runs.stdout.trim(), "1", "installed once");
    let boot = tasks::install::reboot_into_nixos(
        &back.remote,
        &f.cfg,
        &ip,
        Duration::from_secs(30),
        &Discard,
    )
    .await
    .unwrap();
    assert!(matches!(boot, tasks::install::Boot::AlreadyNixos(_)));
    assert_eq!(
        tasks::install::boot_id(&back.remote).await.unwrap(),
        back.boot_id,
        "no second reboot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_installer_is_retryable_and_names_its_url() {
    let f = fixture().await;
    let (r, _) = f.node("n1").await;
    let closed = testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{closed}/nixos-infect");
    let installer =
        Installer::from_vars(Some(url.clone()), Some(f.cloud.installer_sha256().into())).unwrap();
    let err = tasks::install::install(&r, &installer, "nixos-24.11", &Discard)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("n1"), "{text}");
    assert!(!exists(&r, "/root/nixos-infect").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hash_refuses_to_run_the_installer_naming_both_hashes() {
    let f = fixture().await;
    let (r, _) = f.node("n1").await;
    let wrong = "0".repeat(64);
    let installer =
        Installer::from_vars(Some(f.cloud.installer_url()), Some(wrong.clone())).unwrap();
    let err = tasks::install::install(&r, &installer, "nixos-24.11", &Discard)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&wrong) && text.contains(f.cloud.installer_sha256()),
        "{text}"
    );
    assert!(text.contains("refusing to run it"), "{text}");
    // It never ran: no configuration, no staged system, nothing left to run later.
    for path in [
        "/etc/nixos/configuration.nix",
        "/var/lib/nixos-standin",
        "/root/nixos-infect",
        "/root/nixos-infect.part",
    ] {
        assert!(!exists(&r, path).await, "{path}");
    }
    assert!(tasks::nixos::verify(&r).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_its_reboot_with_another_host_key_fails_loudly() {
    let f = fixture().await;
    let (r, ip) = f.node("n1").await;
    tasks::install::install(&r, &f.installer(), "nixos-24.11", &Discard)
        .await
        .unwrap();
    assert!(f.cloud.change_host_key_on_reboot("n1").unwrap());
    let pinned = tasks::ssh::pinned_fingerprint(&f.cfg.known_hosts, &ip, 22)
        .await
        .unwrap();
    let err = tasks::install::reboot(&r, &f.cfg, &ip, Duration::from_secs(30), &Discard)
        .await
        .err()
        .expect("another host key must be refused");
    match &err {
        SshError::HostKeyChanged {
            node,
            known,
            presented,
        } => {
            assert_eq!(node, "n1");
            assert_eq!(known, &pinned);
            assert!(
                presented.starts_with("SHA256:") && presented != known,
                "{err}"
            );
        }
        other => panic!("expected HostKeyChanged, got {other}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(
        tasks::ssh::pinned_fingerprint(&f.cfg.known_hosts, &ip, 22)
            .await
            .as_deref(),
        Some(pinned.as_str()),
        "the new key was not accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_needs_a_pinned_key_to_compare_with() {
    let f = fixture().await;
    let (r, ip) = f.node("n1").await;
    std::fs::write(&f.cfg.known_hosts, "").unwrap();
    let err = tasks::install::reboot(&r, &f.cfg, &ip, Duration::from_secs(30), &Discard)
        .await
        .err()
        .expect("no pinned key, no reboot");
    assert!(matches!(err, SshError::HostKeyNotPinned { .. }), "{err}");
    assert!(err.to_string().contains("refusing to trust"), "{err}");
}

/// Once a node is asked to reboot, no key exchange is spent on the system
/// going down: its sshd answers for a while (here 300 ms, as systemd stops
/// units), and the reboot waits for the old connection to drop. The one
/// handshake after the request is with the new boot. Three nodes reboot at
/// once, each reached through a relay that counts the handshakes clients start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_spends_no_key_exchange_on_the_system_going_down() {
    let f = common::fixture_with(testkit::CloudConfig {
        shutdown_delay: Duration::from_millis(300),
        ..testkit::CloudConfig::default()
    })
    .await;
    let reboots = (1..=3).map(|i| {
        let f = &f;
        async move {
            let name = format!("n{i}");
            let ip = f.create(&name).await;
            let relay = common::relay::Relay::start(format!("{ip}:22").parse().unwrap()).await;
            let cfg = tasks::ssh::SshConfig {
                port: relay.port,
                ..f.cfg.clone()
            };
            let patience = Duration::from_secs(30);
            let r = Remote::wait_for(&cfg, &name, "127.0.0.1", patience)
                .await
                .unwrap();
            tasks::install::install(&r, &f.installer(), "nixos-24.11", &Discard)
                .await
                .unwrap();
            let before = relay.key_exchanges();
            let boot = tasks::install::reboot_into_nixos(&r, &cfg, "127.0.0.1", patience, &Discard)
                .await
                .unwrap();
            assert!(matches!(boot, tasks::install::Boot::Rebooted(_)), "{name}");
            (name, relay.key_exchanges() - before)
        }
    });
    for (name, spent) in futures::future::join_all(reboots).await {
        assert_eq!(
            spent, 1,
            "key exchanges after {name}'s reboot was asked for"
        );
    }
}
