//! # bench-peer: nix-infra's engine beside DBOS Rust 0.5, on one Postgres 15
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-peer SQLX_OFFLINE=true \
//!   cargo run --release --manifest-path bench/peer/Cargo.toml
//! ```
//!
//! (`BENCH_REPEAT=N` sets the repetitions, default 5; medians are shown.
//! `BENCH_QUIET_MS` the idle wait before each window, default 11000; `PG_BIN` the
//! Postgres binaries, as for the tests.)
//!
//! ## The setup
//! One throw-away Postgres 15 (`testkit::Postgres::start_durable_with`) in a temp
//! directory on 127.0.0.1, with default durability (fsync, synchronous_commit and full_page_writes on) and
//! pg_stat_statements preloaded. Each system has a database of its own on it:
//! - `ours`: nix-infra's `engine::Engine` on `storage::SqlStore` (schema `nix_infra`),
//!   running `diag.chain` with 100 no-op links ([`ours`]);
//! - `dbos_peer`: DBOS Transact for Rust 0.5 (schema `dbos`), a workflow of 100
//!   sequential `dbos::step`s that do nothing but add a number ([`dbos_peer`]).
//!
//! Both use their default settings, pools of 10 connections included.
//!
//! ## What is measured
//! The systems take turns, repetition by repetition. One sequential repetition of a
//! system is:
//! 1. start it (connect, migrate, launch) and run a 10-step chain to warm it up;
//! 2. leave it idle for `BENCH_QUIET_MS`, so every backend has flushed the counters it
//!    kept back (see [`stats`]);
//! 3. the **adjacent commit**: 200 one-row autocommit INSERTs on a fresh connection to
//!    the same database (after 10 untimed ones), mean µs; the connection is closed;
//! 4. open the window: read `xact_commit`, `wal_sync`, the WAL insert position, and
//!    `pg_stat_statements_reset()`;
//! 5. time one 100-step chain, from the call that starts it to its result;
//! 6. read the statements (pg_stat_statements calls in that database) and the WAL
//!    position at once; then stop the system (its pools close), wait until none of its
//!    backends is left, and read `xact_commit` and `wal_sync`.
//!
//! µs per step is the chain's time / 100; the ratio is that over the adjacent commit
//! of the same repetition. Statements, commits, WAL bytes and WAL fsyncs per step
//! are the sums over the windows / the steps in them. Commits and statements are the
//! measured database's only; WAL is cluster-wide, so it also holds whatever the server
//! did meanwhile (background writes, a checkpoint's full pages: the run says how many
//! checkpoints fell inside a window). DBOS polls its queues about twice a second even
//! when idle; the part of that falling inside a window (~0.1 s) is counted as its own.
//! Left out by construction: the launch and warm-up (before the reset, and flushed
//! during the idle wait), the adjacent INSERTs (their connection has exited before the
//! window opens), the stop's statements (read before it); the stop's commits, if any,
//! are counted (DBOS's shutdown may flush its notifier; ours commits nothing).
//! `RUST_LOG=dbos=debug` (any `tracing` filter) shows what the systems log.
//!
//! Throughput: start the system, warm it up, and time 10 chains of 100 steps started
//! at once (10 tasks), as steps per second; then stop it.
//!
//! Then it prints a markdown table and whether two targets are met: nix-infra's
//! sequential step at most 1.5× the adjacent commit, and nix-infra's 10-at-once
//! throughput at least twice DBOS's.
#![deny(unsafe_code)]

mod dbos_peer;
mod ours;
mod report;
mod stats;

use anyhow::Result;
use report::Tally;
use stats::Admin;
use std::time::{Duration, Instant};

/// Steps in a chain.
const STEPS: u32 = 100;
/// Chains started at once for throughput.
const AT_ONCE: usize = 10;
/// Timed INSERTs in one adjacent-commit loop.
const ADJACENT_INSERTS: i64 = 200;

/// One system under test, in its own database.
pub(crate) trait Peer {
    /// Its name in the table.
    fn name(&self) -> &'static str;
    /// Its database on the shared server.
    fn db(&self) -> &'static str;
    /// Connects (migrating as needed) and runs a short chain to warm up.
    async fn start(&mut self) -> Result<()>;
    /// Runs one chain of `steps` to its end.
    async fn chain(&self, steps: u32) -> Result<()>;
    /// Runs `chains` chains of `steps` at once, each on its own task.
    async fn chains_at_once(&self, chains: usize, steps: u32) -> Result<()>;
    /// Closes every connection it holds.
    async fn stop(&mut self) -> Result<()>;
}

/// One sequential repetition (steps 1 to 6 of the crate docs), added to `tally`.
async fn sequential<P: Peer>(
    peer: &mut P,
    admin: &mut Admin,
    url: &str,
    quiet: Duration,
    tally: &mut Tally,
) -> Result<()> {
    let db = peer.db();
    peer.start().await?;
    tokio::time::sleep(quiet).await;
    let adjacent = admin.adjacent(url, db, ADJACENT_INSERTS).await?;

    let before = admin.counters(db).await?;
    let checkpoints = admin.checkpoints().await?;
    let lsn = admin.wal_position().await?;
    admin.reset_statements().await?;
    let start = Instant::now();
    peer.chain(STEPS).await?;
    let elapsed = start.elapsed();
    let statements = admin.statements(db).await?;
    let wal_bytes = admin.wal_position().await? - lsn;
    peer.stop().await?;
    admin.wait_gone(db).await?;
    let after = admin.counters(db).await?;

    let us = elapsed.as_secs_f64() * 1e6 / f64::from(STEPS);
    tally.us_per_step.push(us);
    tally.ratio.push(us / adjacent.us);
    tally.adjacent.push(adjacent);
    tally.steps += i64::from(STEPS);
    tally.statements += statements;
    tally.commits += after.commits - before.commits;
    tally.wal_bytes += wal_bytes;
    tally.wal_syncs += after.wal_syncs - before.wal_syncs;
    tally.checkpoints += admin.checkpoints().await? - checkpoints;
    Ok(())
}

/// One throughput repetition: 10 chains at once, in steps per second.
async fn at_once<P: Peer>(peer: &mut P, admin: &mut Admin, tally: &mut Tally) -> Result<()> {
    peer.start().await?;
    let start = Instant::now();
    peer.chains_at_once(AT_ONCE, STEPS).await?;
    let elapsed = start.elapsed();
    peer.stop().await?;
    admin.wait_gone(peer.db()).await?;
    tally
        .steps_per_s
        .push((AT_ONCE as f64 * f64::from(STEPS)) / elapsed.as_secs_f64());
    Ok(())
}

/// An untimed round: first launches migrate, and the first chains fill the caches.
async fn warm_up<P: Peer>(peer: &mut P, admin: &mut Admin) -> Result<()> {
    peer.start().await?;
    peer.chain(STEPS).await?;
    peer.chains_at_once(AT_ONCE, STEPS).await?;
    peer.stop().await?;
    admin.wait_gone(peer.db()).await
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench(server: &testkit::Postgres) -> Result<()> {
    let repeat = env_number("BENCH_REPEAT", 5).max(1);
    let quiet = Duration::from_millis(env_number("BENCH_QUIET_MS", 11_000));
    let mut admin = Admin::connect(&server.url("postgres")).await?;
    admin.exec("CREATE EXTENSION pg_stat_statements").await?;
    let mut dbos = dbos_peer::Dbos::new(server.url("dbos_peer"))?;
    let mut ours = ours::Ours::new(server.url("ours"));
    for db in [dbos.db(), ours.db()] {
        admin.create_database(|d| server.url(d), db).await?;
    }
    let (mut dt, mut ot) = (Tally::default(), Tally::default());
    (dt.name, ot.name) = (dbos.name(), ours.name());
    let (du, ou) = (server.url(dbos.db()), server.url(ours.db()));
    warm_up(&mut dbos, &mut admin).await?;
    warm_up(&mut ours, &mut admin).await?;
    for rep in 1..=repeat {
        eprintln!("sequential repetition {rep} of {repeat}");
        sequential(&mut dbos, &mut admin, &du, quiet, &mut dt).await?;
        sequential(&mut ours, &mut admin, &ou, quiet, &mut ot).await?;
    }
    for rep in 1..=repeat {
        eprintln!("{AT_ONCE} chains at once, repetition {rep} of {repeat}");
        at_once(&mut dbos, &mut admin, &mut dt).await?;
        at_once(&mut ours, &mut admin, &mut ot).await?;
    }
    let version = admin.version().await?;
    println!("{version}; fsync, synchronous_commit, full_page_writes on; {repeat} repetitions");
    report::print(&dt, &ot);
    Ok(())
}

fn main() -> Result<()> {
    // Both systems log through `tracing`; `RUST_LOG=dbos=debug` and the like show it.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // testkit's server (default durability) with what this benchmark reads.
    let server = testkit::Postgres::start_durable_with(&[
        "shared_preload_libraries=pg_stat_statements",
        "track_wal_io_timing=on",
    ])?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(&server))
}
