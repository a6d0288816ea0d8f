//! Load: two `nix-infra worker` processes against one Postgres execute 1,000
//! queued runs of a 5-step chain while a per-second schedule fires, and one
//! of them is killed with `-9` halfway. Every step succeeds exactly once, no
//! run is lost, and every fire time starts exactly one run. (The figures for
//! this load, runs/s and p99 enqueue-to-start, are in the `queue_throughput`
//! benchmark, not here.) `NIX_INFRA_LOAD_RUNS` sets the run count.

use engine::{Engine, RunFilter, RunStatus};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::queue::Queue;

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

fn cli(url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DATABASE_URL")
        .args(["--database-url", url, "--lease-ttl", "2"])
        .stdin(Stdio::null());
    c
}

fn ok(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A worker process, killed with SIGKILL on drop.
struct Worker(Child);

impl Worker {
    fn start(url: &str) -> Worker {
        let child = cli(url)
            .args(["worker", "--concurrency", "8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Queued runs (not the schedule's) with `status`.
async fn count(engine: &Engine, status: RunStatus) -> usize {
    let filter = RunFilter {
        statuses: vec![status],
        limit: Some(100_000),
        id_prefix: Some("load-".into()),
        ..RunFilter::default()
    };
    engine.list(&filter).await.unwrap().len()
}

/// Polls the store until `done` holds for the count of queued runs that
/// succeeded, failing after `limit`.
async fn until(engine: &Engine, limit: Duration, what: &str, done: impl Fn(usize) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let n = count(engine, RunStatus::Succeeded).await;
        if done(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({n} succeeded)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_a_thousand_chains_and_a_schedule_and_lose_nothing_to_kill_9() {
    let n: usize = std::env::var("NIX_INFRA_LOAD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let engine = Engine::new(
        Arc::new(storage::connect(&url).await.unwrap()),
        workflows::registry(),
    );
    let queue = Queue::open(&url, "nix-infra", Duration::from_secs(10))
        .await
        .unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("load-{i:05}")).collect();
    for id in &ids {
        engine
            .create("diag.chain", json!({"steps": 5}), Some(id.clone()))
            .await
            .unwrap();
        queue.enqueue(id).await.unwrap();
    }
    ok(cli(&url).args([
        "schedule",
        "add",
        "tick",
        "--cron",
        "* * * * * *",
        "--workflow",
        "diag.chain",
        "--input",
        r#"{"steps":5}"#,
    ]));

    let a = Worker::start(&url);
    let _b = Worker::start(&url);
    until(
        &engine,
        Duration::from_secs(300),
        "a third of the runs",
        |s| s >= n / 3,
    )
    .await;
    drop(a); // SIGKILL, with runs in flight
    until(&engine, Duration::from_secs(600), "every queued run", |s| {
        s >= n
    })
    .await;
    ok(cli(&url).args(["schedule", "pause", "tick"]));

    // No queued run lost, and each of its steps succeeded exactly once (a
    // step the killed worker had started may have one more attempt, which
    // never succeeded).
    for id in &ids {
        let state = engine.load(id).await.unwrap();
        assert_eq!(state.run.status, RunStatus::Succeeded, "{id}");
        let mut steps = BTreeSet::new();
        for step in state.run.plan.steps.iter().map(|s| &s.name) {
            let ok = state
                .attempts
                .iter()
                .filter(|a| &a.step == step && a.status == engine::AttemptStatus::Succeeded)
                .count();
            assert_eq!(ok, 1, "{id} {step}");
            steps.insert(step.clone());
        }
        assert_eq!(steps.len(), 5, "{id}");
    }

    // Every fire time started exactly one run, one second after another.
    let fired = engine
        .list(&RunFilter {
            limit: Some(100_000),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let mut times: Vec<i64> = fired
        .iter()
        .filter_map(|r| {
            engine::schedule::fire_time_of(&r.id).filter(|_| r.id.starts_with("schedule:tick:"))
        })
        .collect();
    times.sort();
    let fires = times.len();
    times.dedup();
    assert_eq!(times.len(), fires, "one run per fire time");
    assert!(fires >= 2, "the schedule fired during the load: {fires}");
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], 1_000, "no fire time skipped");
    }
    assert_eq!(
        fired.len(),
        n + fires,
        "no run but the queued ones and the fires"
    );
}
