//! Durable overhead per step, as a multiple of one single-row INSERT+COMMIT on the same database.
//!
//! `cargo bench -p nix-infra-testkit --bench engine_overhead` starts a Postgres
//! with default durability (fsync on, synchronous_commit on) and a SQLite file
//! (WAL, synchronous=FULL), then measures on each:
//! - the baseline: a loop of single-row INSERTs, each its own transaction;
//! - `diag.chain` with 100 no-op steps, and `diag.fanout` with 100 no-op branches,
//!   from creating the run to its final commit.
//!
//! It prints time per step, the ratio to the baseline, and durable commits
//! per step (counted by a store wrapper, heartbeats included).
//! It also times the store alone: a chain's commits back to back on a leased
//! run, without the executor, so the two parts of a step's cost show apart.
//! Set `BENCH_REPEAT` to change the repetitions (default 5; the median is shown),
//! `BENCH_WORKERS` to run on that many tokio worker threads (default: one per core).

use async_trait::async_trait;
use engine::{
    Ack, CancelOutcome, Created, Engine, EngineConfig, Lease, LogLine, Millis, NewRun, Observer,
    RunFilter, RunRecord, RunState, RunStatus, Schedule, Store, StoreError, Transition,
};
use serde_json::json;
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counts the write transactions the engine makes.
struct Counting {
    inner: Arc<dyn Store>,
    writes: AtomicU64,
}

#[async_trait]
impl Store for Counting {
    async fn create_run(&self, run: &NewRun) -> Result<Created, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.create_run(run).await
    }
    async fn acquire_lease(
        &self,
        r: &str,
        o: &str,
        n: Millis,
        e: Millis,
    ) -> Result<Lease, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.acquire_lease(r, o, n, e).await
    }
    async fn commit(&self, lease: &Lease, t: &Transition) -> Result<Ack, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.commit(lease, t).await
    }
    async fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        self.inner.load_run(run_id).await
    }
    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list_runs(f).await
    }
    async fn logs(&self, r: &str, s: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        self.inner.logs(r, s).await
    }
    async fn request_cancel(&self, r: &str, n: Millis) -> Result<CancelOutcome, StoreError> {
        self.inner.request_cancel(r, n).await
    }
    async fn try_lock(
        &self,
        r: &str,
        res: &[String],
        n: Millis,
        g: Millis,
    ) -> Result<Option<String>, StoreError> {
        self.inner.try_lock(r, res, n, g).await
    }
    async fn unlock(&self, r: &str) -> Result<(), StoreError> {
        self.inner.unlock(r).await
    }
    async fn add_schedule(&self, s: &Schedule) -> Result<bool, StoreError> {
        self.inner.add_schedule(s).await
    }
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.inner.schedules().await
    }
    async fn set_schedule_paused(&self, n: &str, p: bool) -> Result<bool, StoreError> {
        self.inner.set_schedule_paused(n, p).await
    }
    async fn remove_schedule(&self, n: &str) -> Result<bool, StoreError> {
        self.inner.remove_schedule(n).await
    }
    async fn advance_schedule(&self, n: &str, to: Millis) -> Result<bool, StoreError> {
        self.inner.advance_schedule(n, to).await
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Seconds per single-row INSERT+COMMIT, over `n` rows.
async fn baseline(url: &str, n: i64) -> f64 {
    macro_rules! insert_loop {
        ($conn:expr) => {{
            let mut conn = $conn;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_kv (id BIGINT PRIMARY KEY, v TEXT NOT NULL)",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::query("DELETE FROM bench_kv")
                .execute(&mut conn)
                .await
                .unwrap();
            let start = Instant::now();
            for i in 0..n {
                sqlx::query("INSERT INTO bench_kv (id, v) VALUES ($1, $2)")
                    .bind(i)
                    .bind("value")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            start.elapsed().as_secs_f64() / n as f64
        }};
    }
    if url.starts_with("postgres") {
        insert_loop!(sqlx::PgConnection::connect(url).await.unwrap())
    } else {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .unwrap()
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        insert_loop!(opts.connect().await.unwrap())
    }
}

/// Seconds per step and write transactions per step for one run of `workflow`.
async fn engine_run(store: Arc<dyn Store>, workflow: &str, input: serde_json::Value) -> (f64, f64) {
    let counting = Arc::new(Counting {
        inner: store,
        writes: AtomicU64::new(0),
    });
    let config = EngineConfig {
        concurrency: 128,
        ..EngineConfig::default()
    };
    let engine = Engine::new(counting.clone(), workflows::registry()).with_config(config);
    let start = Instant::now();
    let created = engine.create(workflow, input, None).await.unwrap();
    let id = created.record().id.clone();
    let steps = created.record().plan.steps.len() as f64;
    let out = engine
        .execute(&id, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Succeeded);
    let per_step = start.elapsed().as_secs_f64() / steps;
    (
        per_step,
        counting.writes.load(Ordering::Relaxed) as f64 / steps,
    )
}

/// Seconds per commit of the store alone: the chain's transitions (end step
/// N, start step N+1) committed back to back on a leased run, no executor.
async fn store_alone(store: Arc<dyn Store>, n: usize) -> f64 {
    let engine = Engine::new(store.clone(), workflows::registry());
    let created = engine
        .create("diag.chain", json!({"steps": n}), None)
        .await
        .unwrap();
    let id = created.record().id.clone();
    let now = engine::now_millis();
    let lease = store
        .acquire_lease(&id, "bench", now, now + 60_000)
        .await
        .unwrap();
    let start = |k: usize| engine::AttemptStart {
        step: format!("step-{k}"),
        number: 1,
    };
    let first = Transition {
        now,
        lease_expires_at: now + 60_000,
        started: vec![start(1)],
        status: Some(RunStatus::Running),
        abandon_running: true,
        ..Transition::default()
    };
    store.commit(&lease, &first).await.unwrap();
    let t0 = Instant::now();
    for k in 1..n {
        let t = Transition {
            now,
            lease_expires_at: now + 60_000,
            ended: vec![engine::AttemptEnd {
                step: format!("step-{k}"),
                number: 1,
                status: engine::AttemptStatus::Succeeded,
                output: Some(json!({"index": k, "sum": k * (k + 1) / 2})),
                error: None,
                retry_at: None,
            }],
            started: vec![start(k + 1)],
            ..Transition::default()
        };
        store.commit(&lease, &t).await.unwrap();
    }
    t0.elapsed().as_secs_f64() / (n - 1) as f64
}

async fn measure(name: &str, url: &str, repeat: usize) {
    let store: Arc<dyn Store> = Arc::new(storage::connect(url).await.unwrap());
    // Warm up connections and caches.
    engine_run(store.clone(), "diag.chain", json!({"steps": 10})).await;
    baseline(url, 50).await;

    let mut bases = Vec::new();
    for _ in 0..3 {
        bases.push(baseline(url, 500).await);
    }
    let base = median(bases);
    let mut rows = Vec::new();
    for (label, wf, input) in [
        ("chain of 100", "diag.chain", json!({"steps": 100})),
        ("fan-out of 100", "diag.fanout", json!({"steps": 100})),
    ] {
        let mut times = Vec::new();
        let mut writes = Vec::new();
        for _ in 0..repeat {
            let (t, w) = engine_run(store.clone(), wf, input.clone()).await;
            times.push(t);
            writes.push(w);
        }
        rows.push((label, median(times), median(writes)));
    }
    let mut alone = Vec::new();
    for _ in 0..repeat {
        alone.push(store_alone(store.clone(), 100).await);
    }
    let alone = median(alone);
    println!("{name}: one INSERT+COMMIT = {:.3} ms", base * 1e3);
    println!(
        "  the store alone, a chain step's commit: {:.3} ms ({:.2}x)",
        alone * 1e3,
        alone / base
    );
    println!(
        "  {:<16} {:>12} {:>10} {:>16}",
        "workload", "per step", "ratio", "commits/step"
    );
    for (label, t, w) in rows {
        println!(
            "  {:<16} {:>9.3} ms {:>9.2}x {:>16.2}",
            label,
            t * 1e3,
            t / base,
            w
        );
    }
}

fn main() {
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // BENCH_FSYNC=off shows how much of the cost is execution rather than durability.
    let durable = std::env::var("BENCH_FSYNC").map_or(true, |v| v != "off");
    let rt = match std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        None => tokio::runtime::Runtime::new().unwrap(),
    };
    let pg = if durable {
        testkit::Postgres::start_durable()
    } else {
        testkit::Postgres::start()
    }
    .expect("start postgres (run scripts/setup.sh)");
    let pg_url = pg.fresh_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = testkit::sqlite_url(dir.path());
    rt.block_on(async {
        let mut executor = Vec::new();
        for _ in 0..3 {
            let store = Arc::new(engine::testing::MemoryStore::default());
            executor.push(
                engine_run(store, "diag.chain", json!({"steps": 100}))
                    .await
                    .0,
            );
        }
        println!(
            "executor alone (in-memory store): {:.3} ms per chain step",
            median(executor) * 1e3
        );
        let pg_label = if durable {
            "Postgres (fsync on, synchronous_commit on)"
        } else {
            "Postgres (fsync OFF: execution cost only)"
        };
        measure(pg_label, &pg_url, repeat).await;
        measure("SQLite (WAL, synchronous=FULL)", &sqlite_url, repeat).await;
    });
}
