//! Masters kept between processes (`cmd --ssh-persist`), against real sshd
//! nodes behind a relay that counts connections and key exchanges. A new
//! [`Pool`] stands for a new process: it shares nothing in memory with the old one.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};
use tasks::ssh::{Discard, Pool, SshConfig, SshError};
use tasks::ssh_masters::Persist;

const PATIENCE: Duration = Duration::from_secs(20);

/// `hostname` on `node` through a pool of its own, as one `cmd` process would.
async fn one_process(cfg: &SshConfig, node: &str) -> Result<String, SshError> {
    let pool = Pool::default();
    let out = async {
        let r = pool.get(cfg, node, "127.0.0.1", PATIENCE).await?;
        r.run("hostname", None, &Discard, None).await
    }
    .await;
    pool.close_all().await;
    out.map(|o| o.stdout.trim().to_string())
}

fn record(dir: &Path, node: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(format!("{node}.master"))).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// The control socket `node`'s record names.
fn ctl(dir: &Path, node: &str) -> String {
    record(dir, node).expect("a kept master")["ctl"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Whether the master behind `ctl` answers.
fn answers(ctl: &str) -> bool {
    std::process::Command::new("ssh")
        .args(["-O", "check", "-S", ctl, "x"])
        .output()
        .unwrap()
        .status
        .success()
}

/// Whether the master behind `node`'s record answers.
fn master_answers(dir: &Path, node: &str) -> bool {
    record(dir, node).is_some() && answers(&ctl(dir, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_master_serves_the_next_process_until_its_host_key_changes() {
    let f = common::fixture(Duration::ZERO).await;
    let ip = f.create_server("n1", "debian-12").await;
    let relay = common::relay::Relay::start(format!("{ip}:22").parse().unwrap()).await;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run/masters");
    let cfg = SshConfig {
        port: relay.port,
        persist: Some(Persist {
            dir: dir.clone(),
            idle: Duration::from_secs(60),
        }),
        ..f.cfg.clone()
    };

    assert_eq!(one_process(&cfg, "n1").await.unwrap(), "n1");
    assert_eq!(relay.key_exchanges(), 1);
    assert!(
        master_answers(&dir, "n1"),
        "the first process kept its master"
    );
    // Knocks while the node booted count as connections too.
    let connections = relay.connections();
    for run in 0..3 {
        assert_eq!(one_process(&cfg, "n1").await.unwrap(), "n1");
        assert_eq!(
            (relay.connections(), relay.key_exchanges()),
            (connections, 1),
            "process {} reused the kept master",
            run + 2
        );
    }

    // Another port is another master: a record is reused only for what it was opened for.
    let first_master = ctl(&dir, "n1");
    let second = common::relay::Relay::start(format!("{ip}:22").parse().unwrap()).await;
    let other = SshConfig {
        port: second.port,
        ..cfg.clone()
    };
    assert_eq!(one_process(&other, "n1").await.unwrap(), "n1");
    assert_eq!(second.key_exchanges(), 1, "a master of its own");
    assert!(!answers(&first_master), "the mismatched master was closed");
    assert_ne!(ctl(&dir, "n1"), first_master);

    assert_eq!(one_process(&cfg, "n1").await.unwrap(), "n1");
    assert_eq!(relay.key_exchanges(), 2);
    // A node re-created behind the same address: its old key is forgotten
    // (destroy's `forget` step), so the kept master is not trusted.
    std::fs::remove_file(&cfg.known_hosts).unwrap();
    assert_eq!(one_process(&cfg, "n1").await.unwrap(), "n1");
    assert_eq!(
        relay.key_exchanges(),
        3,
        "a new master, on a newly pinned key"
    );

    // A pinned key that no longer matches the record: the master is closed and
    // the new connection is refused on the changed key.
    let other_key = t.path().join("other");
    common::keygen(&other_key);
    let public = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        relay.port,
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    std::fs::write(&cfg.known_hosts, line).unwrap();
    let e = one_process(&cfg, "n1").await.unwrap_err();
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
    assert!(
        record(&dir, "n1").is_none(),
        "no master kept for a changed key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_masters_idle_out_and_close_on_request() {
    let f = common::fixture(Duration::ZERO).await;
    let ip = f.create_server("n1", "debian-12").await;
    let relay = common::relay::Relay::start(format!("{ip}:22").parse().unwrap()).await;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run/masters");
    let persist = Persist {
        dir: dir.clone(),
        idle: Duration::from_secs(1),
    };
    let cfg = SshConfig {
        port: relay.port,
        persist: Some(persist.clone()),
        ..f.cfg.clone()
    };
    one_process(&cfg, "n1").await.unwrap();
    // ControlPersist=1s: the unused master exits by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    while master_answers(&dir, "n1") {
        assert!(Instant::now() < deadline, "the idle master is still up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    one_process(&cfg, "n1").await.unwrap();
    assert_eq!(relay.key_exchanges(), 2, "an idled-out master is replaced");

    let long = SshConfig {
        persist: Some(Persist {
            idle: Duration::from_secs(60),
            ..persist.clone()
        }),
        ..cfg.clone()
    };
    one_process(&long, "n1").await.unwrap();
    assert!(master_answers(&dir, "n1"));
    assert_eq!(persist.close_all().await.unwrap(), 1);
    assert!(record(&dir, "n1").is_none());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");
    assert_eq!(persist.close_all().await.unwrap(), 0);

    // Without persistence, every process opens its own master.
    let plain = SshConfig {
        persist: None,
        ..cfg.clone()
    };
    let before = relay.key_exchanges();
    one_process(&plain, "n1").await.unwrap();
    one_process(&plain, "n1").await.unwrap();
    assert_eq!(relay.key_exchanges(), before + 2);
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
}
