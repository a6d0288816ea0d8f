//! Workers, the queue, resource locks and schedules, as separate `nix-infra` processes.

use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

fn cli(url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .args(["--database-url", url, "--lease-ttl", "2"]);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn nix-infra")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A worker process; killed (SIGKILL) on drop if still running.
struct Worker(Child);

impl Worker {
    fn start(url: &str, concurrency: u32) -> Worker {
        let child = cli(url)
            .args(["worker", "--concurrency", &concurrency.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child)
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.0.wait().unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn detach(url: &str, input: &str) -> String {
    let out = run(cli(url).args([
        "runs",
        "start",
        "diag.chain",
        "--detach",
        "--output",
        "json",
        "--input",
        input,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)["id"].as_str().unwrap().to_string()
}

fn runs(url: &str) -> Vec<Value> {
    let out = run(cli(url).args(["runs", "list", "--limit", "10000", "--output", "json"]));
    json(&out).as_array().unwrap().clone()
}

fn show(url: &str, id: &str) -> Value {
    json(&run(cli(url).args(["runs", "show", id, "--output", "json"])))
}

/// Waits until `done` holds for the run list, failing after `limit`.
fn wait_for(url: &str, limit: Duration, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let list = runs(url);
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_succeeded(n: usize) -> impl Fn(&[Value]) -> bool {
    move |list| list.len() >= n && list.iter().all(|r| r["status"] == "succeeded")
}

fn ms(t: &Value) -> i64 {
    chrono_ms(t.as_str().unwrap())
}

fn chrono_ms(s: &str) -> i64 {
    // 2026-11-28T03:49:06.366Z
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (enough for comparisons within a test).
    let days = d[0] * 372 + d[1] * 31 + d[2];
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1_000 + frac.parse::<i64>().unwrap()
}

fn every_step_once(url: &str, id: &str) {
    let detail = show(url, id);
    for s in detail["steps"].as_array().unwrap() {
        let attempts = s["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "run {id}: {s}");
        assert_eq!(attempts[0]["status"], "succeeded");
    }
}

#[test]
fn two_workers_execute_200_detached_runs_exactly_once() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let ids: Vec<String> = (0..200).map(|_| detach(&url, r#"{"steps":3}"#)).collect();
    let _a = Worker::start(&url, 8);
    let _b = Worker::start(&url, 8);
    wait_for(
        &url,
        Duration::from_secs(120),
        "200 runs",
        all_succeeded(200),
    );
    for id in ids.iter().step_by(7) {
        every_step_once(&url, id);
    }
    // Enqueueing again is a no-op: the run is not executed twice.
    let out = run(cli(&url).args([
        "runs",
        "start",
        "diag.chain",
        "--detach",
        "--run-id",
        "again",
        "--input",
        "{\"steps\":1}",
    ]));
    assert!(out.status.success());
    let out = run(cli(&url).args([
        "runs",
        "start",
        "diag.chain",
        "--detach",
        "--run-id",
        "again",
        "--input",
        "{\"steps\":1}",
    ]));
    assert!(out.status.success());
    wait_for(
        &url,
        Duration::from_secs(30),
        "the re-enqueued run",
        all_succeeded(201),
    );
    every_step_once(&url, "again");
}

#[test]
fn detached_runs_on_sqlite_with_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let ids: Vec<String> = (0..30).map(|_| detach(&url, r#"{"steps":2}"#)).collect();
    let _a = Worker::start(&url, 4);
    let _b = Worker::start(&url, 4);
    wait_for(&url, Duration::from_secs(120), "30 runs", all_succeeded(30));
    for id in &ids {
        every_step_once(&url, id);
    }
}

#[test]
fn runs_on_one_resource_never_overlap() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let _a = Worker::start(&url, 4);
    let _b = Worker::start(&url, 4);
    let ids: Vec<String> = (0..6)
        .map(|_| detach(&url, r#"{"steps":3,"sleep_ms":80,"resources":["node/x"]}"#))
        .collect();
    // A run on another resource is not held up by them.
    let free = detach(&url, r#"{"steps":1,"resources":["node/y"]}"#);
    wait_for(
        &url,
        Duration::from_secs(60),
        "locked runs",
        all_succeeded(7),
    );
    let mut spans: Vec<(i64, i64, String)> = ids
        .iter()
        .map(|id| {
            let d = show(&url, id);
            let attempts: Vec<&Value> = d["steps"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["attempts"].as_array().unwrap().iter())
                .collect();
            let start = attempts.iter().map(|a| ms(&a["started_at"])).min().unwrap();
            let end = attempts
                .iter()
                .map(|a| ms(&a["finished_at"]))
                .max()
                .unwrap();
            (start, end, id.clone())
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "runs {} and {} overlapped on node/x: {spans:?}",
            w[0].2,
            w[1].2
        );
    }
    every_step_once(&url, &free);
}

#[test]
fn another_worker_takes_over_after_kill_9() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let id = detach(&url, r#"{"steps":12,"sleep_ms":250}"#);
    let a = Worker::start(&url, 2);
    let progress = |list: &[Value]| -> bool {
        list.iter().any(|r| r["status"] == "running") && {
            let d = show(&url, list[0]["id"].as_str().unwrap());
            d["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["status"] == "succeeded")
                .count()
                >= 3
        }
    };
    wait_for(
        &url,
        Duration::from_secs(30),
        "progress on worker A",
        progress,
    );
    drop(a); // SIGKILL
    let before: Vec<String> = show(&url, &id)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "succeeded")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let _b = Worker::start(&url, 2);
    wait_for(
        &url,
        Duration::from_secs(90),
        "takeover by worker B",
        all_succeeded(1),
    );
    let d = show(&url, &id);
    for s in d["steps"].as_array().unwrap() {
        let attempts = s["attempts"].as_array().unwrap();
        let ok = attempts
            .iter()
            .filter(|a| a["status"] == "succeeded")
            .count();
        assert_eq!(ok, 1, "{s}");
        if before.iter().any(|b| b == s["name"].as_str().unwrap()) {
            assert_eq!(
                attempts.len(),
                1,
                "finished before the kill, so never re-run: {s}"
            );
        }
    }
}

#[test]
fn sigterm_lets_the_step_in_flight_finish_and_hands_the_run_back() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let id = detach(&url, r#"{"steps":6,"sleep_ms":600}"#);
    let a = Worker::start(&url, 1);
    wait_for(&url, Duration::from_secs(30), "the run to start", |l| {
        l.iter().any(|r| r["status"] == "running")
    });
    let status = a.terminate();
    assert!(status.success(), "the worker exits cleanly: {status}");
    let d = show(&url, &id);
    assert_eq!(d["status"], "pending", "handed back for another worker");
    assert!(d["lease"].is_null(), "its lease is released: {d}");
    for s in d["steps"].as_array().unwrap() {
        for a in s["attempts"].as_array().unwrap() {
            assert_eq!(a["status"], "succeeded", "the step in flight finished: {s}");
        }
    }
    let t0 = Instant::now();
    let _b = Worker::start(&url, 1);
    wait_for(&url, Duration::from_secs(60), "worker B", all_succeeded(1));
    assert!(t0.elapsed() < Duration::from_secs(30));
    let d = show(&url, &id);
    for s in d["steps"].as_array().unwrap() {
        assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{s}");
    }
}

#[test]
fn a_schedule_fires_exactly_once_per_fire_time_with_two_workers() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let out = run(cli(&url).args([
        "schedule",
        "add",
        "tick",
        "--cron",
        "* * * * * *",
        "--workflow",
        "diag.chain",
        "--input",
        r#"{"steps":1}"#,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _a = Worker::start(&url, 4);
    let _b = Worker::start(&url, 4);
    wait_for(&url, Duration::from_secs(30), "four fires", |l| {
        l.iter().filter(|r| r["status"] == "succeeded").count() >= 4
    });
    let history = json(&run(
        cli(&url).args(["schedule", "history", "tick", "--output", "json"])
    ));
    let history = history.as_array().unwrap();
    let mut times: Vec<i64> = history.iter().map(|h| ms(&h["fire_time"])).collect();
    let n = times.len();
    times.dedup();
    assert_eq!(times.len(), n, "one run per fire time: {history:?}");
    for w in times.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1_000,
            "no fire time skipped or doubled: {history:?}"
        );
    }
    let all = runs(&url);
    assert_eq!(all.len(), n, "nothing but the schedule's runs");
}

#[test]
fn bad_schedules_are_rejected_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let add = |args: &[&str]| run(cli(&url).args(["schedule", "add"]).args(args));
    let cases: [(&[&str], &str); 5] = [
        (
            &["s1", "--cron", "61 * * * *", "--workflow", "diag.chain"],
            "invalid cron expression",
        ),
        (
            &["s2", "--cron", "* * *", "--workflow", "diag.chain"],
            "expected 5 fields",
        ),
        (
            &["s3", "--cron", "* * * * *", "--workflow", "no.such"],
            "unknown workflow `no.such`",
        ),
        (
            &[
                "s4",
                "--cron",
                "* * * * *",
                "--tz",
                "Mars/Base",
                "--workflow",
                "diag.chain",
            ],
            "unknown time zone",
        ),
        (
            &[
                "bad name",
                "--cron",
                "* * * * *",
                "--workflow",
                "diag.chain",
            ],
            "invalid schedule name",
        ),
    ];
    for (args, message) in cases {
        let out = add(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            !dir.path().join("state.db").exists(),
            "{args:?} wrote state"
        );
    }
    let ok = add(&[
        "good",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--workflow",
        "diag.chain",
        "--input",
        r#"{"steps":1}"#,
    ]);
    assert!(ok.status.success());
    let dup = add(&[
        "good",
        "--cron",
        "0 4 * * *",
        "--workflow",
        "diag.chain",
        "--input",
        r#"{"steps":2}"#,
    ]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let list = json(&run(
        cli(&url).args(["schedule", "list", "--output", "json"])
    ));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["cron"], "0 3 * * *",
        "the duplicate changed nothing"
    );
    let paused = run(cli(&url).args(["schedule", "pause", "nope"]));
    assert_eq!(paused.status.code(), Some(2));
}
