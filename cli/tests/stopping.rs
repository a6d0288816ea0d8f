//! SIGTERM stops `nix-infra` within the engine's cancel grace (10 s) plus
//! 2 s, whatever wait its step is in, and leaves the run resumable: a
//! provider backoff, an SSH connect retry, a remote command, and a worker in
//! a backoff (which hands its run back). `runs resume --failed` stops at the
//! run it was in and resumes no other.

mod common;

use common::{Down, cli, ok, show};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{CloudConfig, Faults, TestCloud};

/// The engine's default cancel grace, plus the 2 s the issue allows.
const LIMIT: Duration = Duration::from_secs(12);

fn term(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Starts `c`, waits for a stderr line containing `marker`, sends SIGTERM,
/// and returns how long the process took to exit and its stderr.
fn term_at(c: &mut Command, marker: &str) -> (Duration, String) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let hit = line.contains(marker);
        seen.push(line);
        if hit {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains(marker)),
        "no `{marker}`: {seen:?}"
    );
    let t0 = Instant::now();
    term(&child);
    seen.extend(lines.map_while(Result::ok));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let exited = rx.recv_timeout(LIMIT + Duration::from_secs(30));
    let took = t0.elapsed();
    assert!(
        exited.is_ok(),
        "still running {took:?} after SIGTERM: {seen:?}"
    );
    (took, seen.join("\n"))
}

/// A cluster directory pointing at `cloud`, with a key and the cloud's lines in `.env`.
fn cluster_at(dir: &Path, cloud: &TestCloud) {
    ok(cli(dir).arg("init"));
    let env = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    std::fs::write(dir.join(".env"), format!("{env}{}", cloud.env_lines())).unwrap();
}

async fn cloud(nodes: bool) -> TestCloud {
    TestCloud::start(CloudConfig {
        nodes,
        action_delay: Duration::from_millis(20),
        ..CloudConfig::default()
    })
    .await
    .unwrap()
}

/// Every call answered 429, with a reset two minutes away.
fn rate_limited() -> Faults {
    Faults {
        rate_limited: u32::MAX,
        rate_limit_reset: Duration::from_secs(120),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_a_provider_backoff_cancels_the_run_and_it_resumes_later() {
    let cloud = cloud(true).await;
    let d = tempfile::tempdir().unwrap();
    cluster_at(d.path(), &cloud);
    cloud.set_faults(rate_limited());
    let (took, err) = term_at(
        cli(d.path()).args([
            "-v",
            "cluster",
            "provision",
            "--target",
            "n1",
            "--run-id",
            "p1",
        ]),
        "retrying in",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    assert_eq!(show(d.path(), "p1")["status"], "cancelled", "{err}");
    // Resumable: once the API answers again, the run finishes from there.
    cloud.set_faults(Faults::default());
    ok(cli(d.path()).args(["runs", "resume", "p1"]));
    assert_eq!(show(d.path(), "p1")["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_ssh_retries_an_unreachable_node_stops_within_the_grace() {
    let cloud = cloud(false).await;
    let d = tempfile::tempdir().unwrap();
    cluster_at(d.path(), &cloud);
    // The server exists, but no sshd answers at its address.
    let (took, err) = term_at(
        cli(d.path()).args([
            "-vv",
            "cluster",
            "provision",
            "--target",
            "n1",
            "--run-id",
            "p2",
        ]),
        "retrying in",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    assert_eq!(show(d.path(), "p2")["status"], "cancelled", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_remote_command_stops_within_the_grace() {
    let d = tempfile::tempdir().unwrap();
    let _down = Down(d.path().to_path_buf());
    ok(cli(d.path()).arg("init"));
    ok(cli(d.path()).args(["sandbox", "up"]));
    ok(cli(d.path()).args(["cluster", "provision", "--target", "n1"]));
    let (took, err) = term_at(
        cli(d.path()).args([
            "cluster",
            "cmd",
            "--target",
            "n1",
            "--run-id",
            "c1",
            "echo started >&2; sleep 600",
        ]),
        "run c1: ",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    let status = show(d.path(), "c1")["status"].clone();
    assert_eq!(status, "cancelled", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_worker_in_a_backoff_hands_the_run_back() {
    let cloud = cloud(true).await;
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let d = tempfile::tempdir().unwrap();
    cluster_at(d.path(), &cloud);
    cloud.set_faults(rate_limited());
    let with_db = |c: &mut Command| {
        c.args(["--database-url", &url]);
    };
    let mut detach = cli(d.path());
    with_db(&mut detach);
    ok(detach.args([
        "cluster",
        "provision",
        "--target",
        "n1",
        "--run-id",
        "w1",
        "--detach",
    ]));
    let mut worker = cli(d.path());
    with_db(&mut worker);
    let (took, err) = term_at(worker.args(["-v", "worker"]), "retrying in");
    assert!(took <= LIMIT, "{took:?}: {err}");
    let mut s = cli(d.path());
    with_db(&mut s);
    let out = s
        .args(["runs", "show", "w1", "--output", "json"])
        .output()
        .unwrap();
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Handed back, not cancelled: another worker, or `runs resume`, goes on.
    assert_ne!(run["status"], "cancelled", "{run}");
    assert_ne!(run["status"], "succeeded", "{run}");
    cloud.set_faults(Faults::default());
    let mut resume = cli(d.path());
    with_db(&mut resume);
    ok(resume.args(["runs", "resume", "w1"]));
}

#[test]
fn sigterm_to_resume_failed_stops_at_the_run_it_is_in() {
    let d = tempfile::tempdir().unwrap();
    // Two runs left running by processes killed with -9 (abandoned once
    // their 2 s leases lapse), each in a long step.
    for id in ["r1", "r2"] {
        let running = || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while show(d.path(), id)["status"] != "running" {
                assert!(Instant::now() < deadline, "{id} never started");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        common::kill_9_after(
            cli(d.path()).args([
                "runs",
                "start",
                "diag.chain",
                "--run-id",
                id,
                "--input",
                r#"{"steps":2,"sleep_ms":600000}"#,
            ]),
            "steps",
            running,
        );
    }
    // Polls the run's state: abandoned once its lease has lapsed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ["r1", "r2"]
        .iter()
        .any(|id| show(d.path(), id)["abandoned"] != true)
    {
        assert!(Instant::now() < deadline, "the leases never lapsed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (took, err) = term_at(
        cli(d.path()).args(["runs", "resume", "--failed"]),
        "resuming run",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    assert!(err.contains("1 run(s) not resumed"), "{err}");
    assert_eq!(err.matches("resuming run").count(), 1, "{err}");
    // The run it was in is left cancelled; the other is as it was.
    assert_eq!(show(d.path(), "r1")["status"], "cancelled", "{err}");
    assert_eq!(show(d.path(), "r2")["abandoned"], true, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_worker_waiting_for_a_lock_hands_both_runs_back() {
    let cloud = cloud(true).await;
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let d = tempfile::tempdir().unwrap();
    cluster_at(d.path(), &cloud);
    let with_db = |args: &[&str]| {
        let mut c = cli(d.path());
        c.args(["--database-url", &url]).args(args);
        c
    };
    ok(&mut with_db(&["cluster", "provision", "--target", "n1"]));
    // Two commands on one node: the second waits for the first's lock.
    for id in ["c1", "c2"] {
        ok(&mut with_db(&[
            "cluster",
            "cmd",
            "--target",
            "n1",
            "--run-id",
            id,
            "--detach",
            "sleep 600",
        ]));
    }
    let (took, err) = term_at(
        &mut with_db(&["-v", "worker", "--concurrency", "4"]),
        "waiting for a resource lock",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    for id in ["c1", "c2"] {
        let out = with_db(&["runs", "show", id, "--output", "json"])
            .output()
            .unwrap();
        let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            run["status"] == "pending" || run["status"] == "running" && run["abandoned"] == true,
            "{id} handed back: {run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_waiting_for_etcd_stops_within_the_grace() {
    let cloud = cloud(true).await;
    let d = tempfile::tempdir().unwrap();
    ok(cli(d.path()).args(["init", "--example"]));
    let env = std::fs::read_to_string(d.path().join(".env")).unwrap_or_default();
    std::fs::write(d.path().join(".env"), format!("{env}{}", cloud.env_lines())).unwrap();
    // etcd turned off by mistake: the control node never answers.
    let ctrl = d.path().join("node_types/control_node.nix");
    let text = std::fs::read_to_string(&ctrl).unwrap();
    assert!(text.contains("    enable = true;"));
    std::fs::write(
        &ctrl,
        text.replacen("    enable = true;", "    enable = false;", 1),
    )
    .unwrap();
    let (took, err) = term_at(
        cli(d.path()).args([
            "cluster",
            "up",
            "--workers",
            "0",
            "--ingress",
            "0",
            "--run-id",
            "e1",
        ]),
        "✓ rebuild/ctrl1",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    let run = show(d.path(), "e1");
    assert_eq!(run["status"], "cancelled", "{err}");
    // It was in the wait: its attempt was cut off.
    let etcd = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "etcd/ctrl1")
        .unwrap();
    assert_eq!(etcd["attempts"][0]["status"], "cancelled", "{etcd}");
}

#[test]
fn sigterm_to_runs_start_cancels_the_run_and_it_resumes_later() {
    let d = tempfile::tempdir().unwrap();
    let (took, err) = term_at(
        cli(d.path()).args([
            "runs",
            "start",
            "diag.chain",
            "--run-id",
            "s1",
            "--input",
            r#"{"steps":2,"sleep_ms":1500}"#,
        ]),
        "steps",
    );
    assert!(took <= LIMIT, "{took:?}: {err}");
    assert_eq!(show(d.path(), "s1")["status"], "cancelled", "{err}");
    ok(cli(d.path()).args(["runs", "resume", "s1"]));
    assert_eq!(show(d.path(), "s1")["status"], "succeeded");
}
