//! `nix-infra worker`: executes queued runs and fires schedules, until SIGTERM.

use crate::{Context, Failure};
use ::worker::queue::Queue;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Opens the queue that goes with the context's database.
pub async fn open_queue(ctx: &Context, name: &str) -> Result<Queue, Failure> {
    let heartbeat = Duration::from_secs(ctx.global.lease_ttl).div_f64(3.0);
    Ok(Queue::open(&ctx.url, name, heartbeat).await?)
}

/// Runs the worker until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn run(ctx: &Context, concurrency: usize, queue_name: &str) -> Result<(), Failure> {
    let queue = open_queue(ctx, queue_name).await?;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("worker: shutting down; in-flight steps may finish");
            shutdown.cancel();
        });
    }
    let name = format!("worker-{}", ctx.engine.config().owner);
    eprintln!("worker {name}: {concurrency} at once, queue `{queue_name}`");
    ::worker::work(ctx.engine.clone(), queue, &name, concurrency, shutdown)
        .await
        .map_err(|e| Failure::Other(anyhow::anyhow!("worker failed: {e}")))
}
