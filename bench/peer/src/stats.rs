//! The server's own counters, read from a connection to the `postgres` database,
//! and the adjacent commit (a loop of one-row autocommit INSERTs).
//!
//! Why the measuring queries stay out of the figures:
//! - every query here runs on the admin connection, in database `postgres`, while each
//!   system runs in a database of its own: its commits land in `postgres`'s
//!   `xact_commit`, and its statements under `postgres`'s `dbid` in
//!   pg_stat_statements, and both are filtered by the measured database;
//! - they are all reads (catalog views, `pg_current_wal_insert_lsn()`,
//!   `pg_stat_statements_reset()`), which write no WAL and sync none.
//!
//! What the server defers: `pg_stat_database` and `pg_stat_wal` are fed by each
//! backend's pending counters, which it flushes at most once a second while busy and
//! otherwise ~10 s after going idle, or when it exits. pg_stat_statements and the WAL
//! insert position are updated at once. So the harness reads `xact_commit` and
//! `wal_sync` only after every backend of the measured database has exited
//! ([`Admin::wait_gone`]), and it lets a freshly started system sit idle past the
//! flush interval before a window opens.

use anyhow::{Context, Result};
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};

/// The measuring connection, on database `postgres`.
pub struct Admin {
    conn: PgConnection,
}

/// Cluster and database counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// `pg_stat_database.xact_commit` of the measured database.
    pub commits: i64,
    /// `pg_stat_wal.wal_sync` (cluster-wide).
    pub wal_syncs: i64,
}

/// What one loop of adjacent commits cost.
#[derive(Clone, Copy, Debug)]
pub struct Adjacent {
    /// Mean µs per one-row INSERT, each its own transaction.
    pub us: f64,
    /// WAL bytes per INSERT (insert position difference over the timed loop).
    pub wal_bytes: f64,
    /// WAL fsyncs per INSERT (`pg_stat_wal.wal_sync` over the connection's life).
    pub wal_syncs: f64,
}

/// Untimed INSERTs before the timed loop (statement cache, first pages).
const WARM_INSERTS: i64 = 10;

impl Admin {
    /// Connects to `url` (the `postgres` database).
    pub async fn connect(url: &str) -> Result<Admin> {
        let conn = PgConnection::connect(url)
            .await
            .context("admin connection")?;
        Ok(Admin { conn })
    }

    /// Runs one statement whose result is not needed.
    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.conn)
            .await
            .with_context(|| format!("`{sql}`"))?;
        Ok(())
    }

    /// Creates database `db` with the adjacent-commit table in its `public` schema.
    pub async fn create_database(
        &mut self,
        url_of: impl Fn(&str) -> String,
        db: &str,
    ) -> Result<()> {
        self.exec(&format!("CREATE DATABASE {db}")).await?;
        let mut conn = PgConnection::connect(&url_of(db)).await?;
        sqlx::query(
            "CREATE TABLE public.bench_adjacent (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)",
        )
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        self.wait_gone(db).await
    }

    /// The deferred counters; read them only once [`Self::wait_gone`] returned.
    pub async fn counters(&mut self, db: &str) -> Result<Counters> {
        let (commits, wal_syncs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = $1), \
                    (SELECT wal_sync FROM pg_stat_wal)",
        )
        .bind(db)
        .fetch_one(&mut self.conn)
        .await?;
        Ok(Counters { commits, wal_syncs })
    }

    /// The WAL insert position, in bytes from 0/0 (updated at once, cluster-wide).
    pub async fn wal_position(&mut self) -> Result<i64> {
        let (lsn,): (i64,) =
            sqlx::query_as("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&mut self.conn)
                .await?;
        Ok(lsn)
    }

    /// The server's `version()`.
    pub async fn version(&mut self) -> Result<String> {
        let (v,): (String,) = sqlx::query_as("SELECT version()")
            .fetch_one(&mut self.conn)
            .await?;
        Ok(v)
    }

    /// Forgets every statement counted so far.
    pub async fn reset_statements(&mut self) -> Result<()> {
        self.exec("SELECT pg_stat_statements_reset()").await
    }

    /// Top-level statements executed in `db` since the last reset (BEGIN and COMMIT count).
    pub async fn statements(&mut self, db: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
        )
        .bind(db)
        .fetch_one(&mut self.conn)
        .await?;
        Ok(n)
    }

    /// Checkpoints so far (a checkpoint inside a window inflates its WAL with full pages).
    pub async fn checkpoints(&mut self) -> Result<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
                .fetch_one(&mut self.conn)
                .await?;
        Ok(n)
    }

    /// Waits until no backend is connected to `db`, so each has flushed its counters
    /// (a backend flushes them before it leaves pg_stat_activity).
    pub async fn wait_gone(&mut self, db: &str) -> Result<()> {
        self.wait_backends_gone(db, None).await
    }

    /// Waits until the backends of `db` (only `pid`, when given) have exited. After 5 s
    /// the stragglers are terminated, which flushes their counters too.
    async fn wait_backends_gone(&mut self, db: &str, pid: Option<i32>) -> Result<()> {
        const FILTER: &str = "FROM pg_stat_activity WHERE datname = $1 \
            AND pid <> pg_backend_pid() AND ($2::int IS NULL OR pid = $2)";
        let start = Instant::now();
        let mut terminated = false;
        loop {
            let (n,): (i64,) =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) {FILTER}")))
                    .bind(db)
                    .bind(pid)
                    .fetch_one(&mut self.conn)
                    .await?;
            if n == 0 {
                return Ok(());
            }
            if !terminated && start.elapsed() > Duration::from_secs(5) {
                eprintln!("warning: {n} connection(s) to {db} outlived their pool; terminating");
                let sql = format!("SELECT pg_terminate_backend(pid) {FILTER}");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(db)
                    .bind(pid)
                    .execute(&mut self.conn)
                    .await?;
                terminated = true;
            }
            if start.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("connections to {db} did not go away in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Times `n` one-row autocommit INSERTs on a fresh connection to `db`.
    ///
    /// The connection is closed, and its backend gone, before this returns, so its
    /// commits and syncs are counted and flushed before the next window opens.
    pub async fn adjacent(&mut self, url: &str, db: &str, n: i64) -> Result<Adjacent> {
        let before = self.counters(db).await?;
        let mut conn = PgConnection::connect(url).await?;
        let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        let insert = "INSERT INTO public.bench_adjacent (v) VALUES ($1)";
        for _ in 0..WARM_INSERTS {
            sqlx::query(insert).bind("value").execute(&mut conn).await?;
        }
        let lsn0 = self.wal_position().await?;
        let start = Instant::now();
        for _ in 0..n {
            sqlx::query(insert).bind("value").execute(&mut conn).await?;
        }
        let elapsed = start.elapsed();
        let lsn1 = self.wal_position().await?;
        conn.close().await?;
        self.wait_backends_gone(db, Some(pid)).await?;
        let after = self.counters(db).await?;
        let inserts = (n + WARM_INSERTS) as f64;
        Ok(Adjacent {
            us: elapsed.as_secs_f64() * 1e6 / n as f64,
            wal_bytes: (lsn1 - lsn0) as f64 / n as f64,
            wal_syncs: (after.wal_syncs - before.wal_syncs) as f64 / inserts,
        })
    }
}
