//! nix-infra: `engine::Engine` on the Postgres `SqlStore`, running `diag.chain`.
//!
//! The store lives in its own database (`ours`), in its usual schema `nix_infra`.
//! The engine's settings are its defaults, and so is the store's pool (10 connections,
//! as `storage::connect` builds it). A chain is timed from `Engine::create` (the plan is
//! stored) to the end of `Engine::execute` (the run's final commit).

use crate::Peer;
use anyhow::{Context, Result, ensure};
use engine::{Engine, Observer, Registry, RunStatus};
use std::sync::Arc;
use storage::SqlStore;
use tokio_util::sync::CancellationToken;

/// The engine and its store, while started.
pub struct Ours {
    url: String,
    running: Option<(Engine, Arc<SqlStore>)>,
}

impl Ours {
    /// The engine on database `url` (not connected until [`Peer::start`]).
    pub fn new(url: String) -> Ours {
        Ours { url, running: None }
    }

    fn engine(&self) -> Result<&Engine> {
        Ok(&self.running.as_ref().context("not started")?.0)
    }
}

/// One `diag.chain` of `steps` no-op links, created and executed to its end.
async fn run_chain(engine: &Engine, steps: u32) -> Result<()> {
    let created = engine
        .create("diag.chain", serde_json::json!({ "steps": steps }), None)
        .await?;
    let id = created.record().id.clone();
    let out = engine
        .execute(&id, CancellationToken::new(), Observer::none())
        .await?;
    ensure!(
        out.status == RunStatus::Succeeded,
        "diag.chain ended {:?}",
        out.status
    );
    Ok(())
}

impl Peer for Ours {
    fn name(&self) -> &'static str {
        "nix-infra"
    }

    fn db(&self) -> &'static str {
        "ours"
    }

    async fn start(&mut self) -> Result<()> {
        let store = Arc::new(storage::connect(&self.url).await?);
        let mut registry = Registry::new();
        registry.register(workflows::diag::chain());
        let engine = Engine::new(store.clone(), registry);
        run_chain(&engine, 10).await?;
        self.running = Some((engine, store));
        Ok(())
    }

    async fn chain(&self, steps: u32) -> Result<()> {
        run_chain(self.engine()?, steps).await
    }

    async fn chains_at_once(&self, chains: usize, steps: u32) -> Result<()> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..chains {
            let engine = self.engine()?.clone();
            set.spawn(async move { run_chain(&engine, steps).await });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some((engine, store)) = self.running.take() {
            drop(engine);
            let pool = store.pg_pool().context("not a Postgres store")?;
            pool.close().await;
        }
        Ok(())
    }
}
