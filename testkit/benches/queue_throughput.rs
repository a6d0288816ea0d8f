//! The queue on Postgres: enqueue → first step latency, engine runs/s with 1 and 2
//! workers, and raw apalis jobs/s through the same queue, side by side.
//!
//! `cargo bench -p nix-infra-testkit --bench queue_throughput` (starts its own
//! Postgres with default durability). `BENCH_RUNS` sets the run count (default 300).
//! Last, the load of the reliability suite (`cli/tests/load.rs`): 1,000 runs of
//! a 5-step chain enqueued while two workers run, as runs/s and the p50/p99 of
//! enqueue to first step start.

use async_trait::async_trait;
use engine::{Engine, EngineConfig, RunStatus, now_millis};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use worker::queue::{JobHandler, Queue};

fn engine(store: storage::SqlStore) -> Engine {
    Engine::new(Arc::new(store), workflows::registry()).with_config(EngineConfig {
        heartbeat: Duration::from_secs(5),
        ..EngineConfig::default()
    })
}

/// How many runs have succeeded: a count, not a listing, so that watching
/// for the end costs the database next to nothing (a listing of every run,
/// plans included, every 20 ms took a share of the two cores from the workers).
async fn succeeded(pool: &sqlx::PgPool) -> usize {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        .fetch_one(pool)
        .await
        .unwrap() as usize
}

/// Starts `n` in-process workers on `queue`; returns the token that stops them.
fn workers(
    engine: &Engine,
    queue: &Queue,
    n: usize,
) -> (CancellationToken, Vec<tokio::task::JoinHandle<()>>) {
    let stop = CancellationToken::new();
    let handles = (0..n)
        .map(|i| {
            let (engine, queue, stop) = (engine.clone(), queue.clone(), stop.clone());
            // apalis's worker future is not `Send`: run it on this thread's LocalSet.
            tokio::task::spawn_local(async move {
                let name = format!("bench-{i}-{}", engine::new_run_id());
                worker::work(engine, queue, &name, 16, stop).await.unwrap();
            })
        })
        .collect();
    (stop, handles)
}

async fn stop(workers: (CancellationToken, Vec<tokio::task::JoinHandle<()>>)) {
    workers.0.cancel();
    for h in workers.1 {
        let _ = h.await;
    }
}

async fn latency(url: &str, samples: usize) -> (i64, i64) {
    let engine = engine(storage::connect(url).await.unwrap());
    let queue = Queue::open(url, "latency", Duration::from_secs(10))
        .await
        .unwrap();
    let w = workers(&engine, &queue, 1);
    tokio::time::sleep(Duration::from_millis(300)).await; // let the worker settle
    let mut lat = Vec::new();
    for i in 0..samples {
        let id = format!("lat-{i}");
        engine
            .create("diag.chain", json!({"steps": 1}), Some(id.clone()))
            .await
            .unwrap();
        let t0 = now_millis();
        queue.enqueue(&id).await.unwrap();
        loop {
            let s = engine.load(&id).await.unwrap();
            if let Some(a) = s.attempts.first() {
                lat.push(a.started_at - t0);
                if s.run.status == RunStatus::Succeeded {
                    break;
                }
            }
            if s.run.status == RunStatus::Succeeded {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.dedup();
    }
    stop(w).await;
    lat.sort();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

async fn runs_per_second(url: &str, queue_name: &str, n: usize, worker_count: usize) -> f64 {
    let store = storage::connect(url).await.unwrap();
    let pool = store.pg_pool().expect("Postgres").clone();
    let engine = engine(store);
    let queue = Queue::open(url, queue_name, Duration::from_secs(10))
        .await
        .unwrap();
    let before = succeeded(&pool).await;
    for _ in 0..n {
        let id = engine
            .create("diag.chain", json!({"steps": 1}), None)
            .await
            .unwrap()
            .record()
            .id
            .clone();
        queue.enqueue(&id).await.unwrap();
    }
    let t0 = Instant::now();
    let w = workers(&engine, &queue, worker_count);
    while succeeded(&pool).await < before + n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    stop(w).await;
    rate
}

struct Count(Arc<AtomicUsize>);

#[async_trait]
impl JobHandler for Count {
    async fn handle(&self, _run_id: String) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn raw_apalis(url: &str, n: usize) -> f64 {
    let queue = Queue::open(url, "raw", Duration::from_secs(10))
        .await
        .unwrap();
    for i in 0..n {
        queue.enqueue(&format!("raw-{i}")).await.unwrap();
    }
    let count = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let h = {
        let (queue, stop, count) = (queue.clone(), stop.clone(), count.clone());
        tokio::task::spawn_local(async move {
            queue
                .work("raw-worker", 16, Arc::new(Count(count)), async move {
                    stop.cancelled().await
                })
                .await
                .unwrap();
        })
    };
    while count.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    stop.cancel();
    let _ = h.await;
    rate
}

/// The reliability suite's load (`cli/tests/load.rs`) as figures: two
/// workers busy while `n` runs of a 5-step chain are enqueued as fast as one
/// producer can; returns runs/s (first enqueue to last finish) and the p50
/// and p99 of enqueue to first step start.
async fn load(url: &str, n: usize) -> (f64, i64, i64) {
    let engine = engine(storage::connect(url).await.unwrap());
    let queue = Queue::open(url, "load", Duration::from_secs(10))
        .await
        .unwrap();
    let w = workers(&engine, &queue, 2);
    tokio::time::sleep(Duration::from_millis(300)).await; // let the workers settle
    let t0 = Instant::now();
    let mut enqueued = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("load-{i}");
        engine
            .create("diag.chain", json!({"steps": 5}), Some(id.clone()))
            .await
            .unwrap();
        enqueued.push((id.clone(), now_millis()));
        queue.enqueue(&id).await.unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    for (id, at) in &enqueued {
        loop {
            let s = engine.load(id).await.unwrap();
            if s.run.status == RunStatus::Succeeded {
                let first = s.attempts.iter().map(|a| a.started_at).min().unwrap();
                lat.push(first - at);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    stop(w).await;
    lat.sort();
    (rate, lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

fn main() {
    let n: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let pg = testkit::Postgres::start_durable().expect("start postgres (run scripts/setup.sh)");
    let url = pg.fresh_database().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = tokio::task::LocalSet::new();
    rt.block_on(local.run_until(async {
        let (p50, p99) = latency(&url, 200).await;
        println!("Postgres queue (fsync on), {n} one-step runs:");
        println!("  enqueue -> first step start: p50 {p50} ms, p99 {p99} ms");
        let one = runs_per_second(&url, "tput1", n, 1).await;
        let two = runs_per_second(&url, "tput2", n, 2).await;
        let raw = raw_apalis(&url, n * 4).await;
        println!(
            "  engine runs/s, 1 worker:  {one:8.1}  ({:.2}x raw)",
            one / raw
        );
        println!(
            "  engine runs/s, 2 workers: {two:8.1}  ({:.2}x raw)",
            two / raw
        );
        println!("  raw apalis jobs/s:        {raw:8.1}");
        let (rate, p50, p99) = load(&url, 1_000).await;
        println!("1,000 five-step runs enqueued while 2 workers run:");
        println!("  {rate:.1} runs/s; enqueue -> first step start: p50 {p50} ms, p99 {p99} ms");
    }));
}
