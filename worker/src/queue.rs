//! [`Queue`]: apalis carries queued runs to workers; the engine's tables stay the truth.
//!
//! A job holds only a run id. Its apalis idempotency key is the run id, so a
//! run is enqueued at most once however often `enqueue` is called. apalis
//! keeps its own tables: on Postgres in its `apalis` schema (through a pool
//! without nix-infra's `search_path`, so the two migration ledgers stay
//! apart), on SQLite in a sibling file `<state>-queue.db`.

use apalis::prelude::*;
use apalis_postgres::{PostgresStorage, Pubsub};
use apalis_sqlite::SqliteStorage;
use async_trait::async_trait;
use engine::StoreError;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use storage::{ConnectError, redact_url};

/// What a queued job carries: the run to execute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunJob {
    /// The run.
    pub run_id: String,
}

/// Executes one queued run; implemented by the worker.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `run_id`; an error makes apalis hand the job out again.
    async fn handle(&self, run_id: String) -> Result<(), String>;
}

/// How often an idle Postgres worker polls besides LISTEN/NOTIFY (which loses wake-ups).
pub const FALLBACK_POLL: Duration = Duration::from_millis(50);

/// The queue of runs waiting for a worker.
#[derive(Clone, Debug)]
pub enum Queue {
    /// apalis-postgres.
    Postgres {
        /// apalis's pool (default search_path).
        pool: PgPool,
        /// Queue name and heartbeats.
        config: apalis_postgres::Config,
        /// The queue name (LISTEN/NOTIFY channel).
        name: String,
    },
    /// apalis-sqlite.
    Sqlite {
        /// apalis's pool on the sibling file.
        pool: SqlitePool,
        /// Queue name and heartbeats.
        config: apalis_sqlite::Config,
    },
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The file apalis-sqlite uses beside a state file: `state.db` → `state-queue.db`.
pub fn sqlite_queue_path(state: &str) -> PathBuf {
    let path = state
        .strip_prefix("sqlite://")
        .or_else(|| state.strip_prefix("sqlite:"))
        .unwrap_or(state);
    let path = PathBuf::from(path.split('?').next().unwrap_or_default());
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("state");
    path.with_file_name(format!("{stem}-queue.db"))
}

impl Queue {
    /// Opens (and migrates) the queue that goes with the state database at `url`.
    ///
    /// `heartbeat` is how often a worker proves it is alive; a job whose worker
    /// misses two is handed to another worker.
    pub async fn open(url: &str, name: &str, heartbeat: Duration) -> Result<Queue, ConnectError> {
        let shown = redact_url(url);
        let fail = |reason: String| ConnectError::Unreachable {
            url: shown.clone(),
            reason,
        };
        if url.starts_with("postgres") {
            let opts = PgConnectOptions::from_str(url).map_err(|e| fail(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .connect_with(opts)
                .await
                .map_err(|e| fail(e.to_string()))?;
            PostgresStorage::<()>::setup(&pool)
                .await
                .map_err(|e| fail(format!("cannot set up the queue: {e}")))?;
            let config = apalis_postgres::Config::default()
                .queue(name)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(2);
            Ok(Queue::Postgres {
                pool,
                config,
                name: name.to_string(),
            })
        } else {
            let path = sqlite_queue_path(url);
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(|e| fail(e.to_string()))?;
            // SQLite's migrations take no lock of their own: two processes
            // opening a new queue at once (a worker and a `--detach`) would
            // both apply them. A lock file next to it makes them take turns.
            let lock_path = path.with_extension("db-setup.lock");
            let lock = tokio::task::spawn_blocking(move || {
                let f = std::fs::File::create(&lock_path)?;
                f.lock()?;
                Ok::<_, std::io::Error>(f)
            })
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("cannot lock the queue for its setup: {e}")))?;
            let setup = SqliteStorage::<()>::setup(&pool).await;
            drop(lock);
            setup.map_err(|e| fail(format!("cannot set up the queue: {e}")))?;
            let config = apalis_sqlite::Config::default()
                .queue(name)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(2);
            Ok(Queue::Sqlite { pool, config })
        }
    }

    /// Enqueues `run_id` unless it was enqueued before; `true` if this call added it.
    pub async fn enqueue(&self, run_id: &str) -> Result<bool, StoreError> {
        let task = TaskBuilder::new(RunJob {
            run_id: run_id.to_string(),
        })
        .idempotency_key(run_id)
        .max_attempts(1_000)
        .build();
        match self {
            Queue::Postgres { pool, config, .. } => {
                let mut storage = PostgresStorage::<RunJob>::new(pool).with_config(config.clone());
                match storage.push_task(task).await {
                    Ok(()) => Ok(true),
                    // The idempotency key's unique index: already queued.
                    Err(e) if e.to_string().contains("idx_jobs_idempotency_key") => Ok(false),
                    Err(e) => Err(db(e)),
                }
            }
            Queue::Sqlite { pool, config } => {
                let before = Self::sqlite_count(pool).await?;
                let mut storage = SqliteStorage::<RunJob>::new(pool).with_config(config.clone());
                storage.push_task(task).await.map_err(db)?;
                Ok(Self::sqlite_count(pool).await? > before)
            }
        }
    }

    async fn sqlite_count(pool: &SqlitePool) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM Jobs")
            .fetch_one(pool)
            .await
            .map_err(db)
    }

    /// Runs a worker until `shutdown` resolves: jobs go to `handler`, at most
    /// `concurrency` at once. Returns once the jobs in flight have ended.
    pub async fn work(
        &self,
        worker: &str,
        concurrency: usize,
        handler: Arc<dyn JobHandler>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        async fn run(job: RunJob, h: Data<Arc<dyn JobHandler>>) -> Result<(), BoxDynError> {
            h.0.handle(job.run_id).await.map_err(BoxDynError::from)
        }
        let signal = async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        };
        match self {
            Queue::Postgres { pool, config, name } => {
                let strategy = Strategy::new()
                    .stream(Pubsub::new(pool.clone(), name.clone()))
                    .interval(FALLBACK_POLL);
                let backend = PostgresStorage::<RunJob>::new(pool)
                    .with_config(config.clone())
                    .poll_with_strategy(strategy);
                WorkerBuilder::new(worker)
                    .backend(backend)
                    .concurrency(concurrency)
                    .data(handler)
                    .build(run)
                    .run_until(signal)
                    .await
                    .map_err(|e| e.to_string())
            }
            Queue::Sqlite { pool, config } => {
                let backend = SqliteStorage::<RunJob>::new(pool)
                    .with_config(config.clone())
                    .poll_with_strategy(Strategy::new().interval(FALLBACK_POLL));
                WorkerBuilder::new(worker)
                    .backend(backend)
                    .concurrency(concurrency)
                    .data(handler)
                    .build(run)
                    .run_until(signal)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}
