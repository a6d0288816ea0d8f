//! DBOS Transact for Rust 0.5: a workflow of N sequential no-op steps.
//!
//! Used through its documented surface only: `DBOS::new(Config)`,
//! `register_workflow` before `launch`, `WorkflowRef::run`, `dbos::step` inside the
//! workflow body, `shutdown`. The configuration is `Config::new`'s defaults (a pool of
//! 10 connections, LISTEN/NOTIFY on, its tables in schema `dbos`) plus the two fields a
//! launch requires: an application name and a version. It runs in its own database
//! (`dbos_peer`), so its schema and ours never meet.
//!
//! Each step returns the running sum, like a link of `diag.chain`, so every step
//! has a small serde output to checkpoint, as ours does.

use crate::Peer;
use anyhow::{Context, Result, ensure};
use dbos::{Config, DBOS, WorkflowRef};

/// The workflow: `steps` checkpointed steps in a line, each adding its index.
async fn chain(steps: u32) -> dbos::Result<u64> {
    let mut sum = 0u64;
    for index in 1..=u64::from(steps) {
        let prev = sum;
        sum = dbos::step(
            "link",
            move || async move { dbos::Result::Ok(prev + index) },
        )
        .await?;
    }
    Ok(sum)
}

/// The sum `chain(steps)` must return.
fn expected(steps: u32) -> u64 {
    let n = u64::from(steps);
    n * (n + 1) / 2
}

/// A DBOS instance with the chain registered; launched between start and stop.
pub struct Dbos {
    dbos: DBOS,
    chain: WorkflowRef<u32, u64>,
}

impl Dbos {
    /// Registers the workflow on an instance for database `url` (nothing connects yet).
    pub fn new(url: String) -> Result<Dbos> {
        let config = Config {
            app_version: Some("bench-1".to_owned()),
            ..Config::new("nix-infra-bench-peer", url)
        };
        let dbos = DBOS::new(config);
        let chain = dbos
            .register_workflow("chain", chain)
            .context("register the DBOS workflow")?;
        Ok(Dbos { dbos, chain })
    }
}

/// Runs one chain to its end and checks its result.
async fn run_chain(chain: &WorkflowRef<u32, u64>, steps: u32) -> Result<()> {
    let sum = chain.run(steps).await?;
    ensure!(sum == expected(steps), "DBOS chain returned {sum}");
    Ok(())
}

impl Peer for Dbos {
    fn name(&self) -> &'static str {
        "DBOS Rust 0.5"
    }

    fn db(&self) -> &'static str {
        "dbos_peer"
    }

    async fn start(&mut self) -> Result<()> {
        self.dbos.launch().await.context("launch DBOS")?;
        run_chain(&self.chain, 10).await
    }

    async fn chain(&self, steps: u32) -> Result<()> {
        run_chain(&self.chain, steps).await
    }

    async fn chains_at_once(&self, chains: usize, steps: u32) -> Result<()> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..chains {
            let chain = self.chain.clone();
            set.spawn(async move { run_chain(&chain, steps).await });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        self.dbos.shutdown().await;
        Ok(())
    }
}
