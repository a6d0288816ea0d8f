//! `nix-infra worker`: executes queued runs and fires schedules, until SIGTERM.

use crate::args::Global;
use crate::{Context, Failure};
use clap::Args;

/// `nix-infra worker`
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Most runs executing at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// The queue to take runs from.
    #[arg(long, default_value = "nix-infra")]
    queue: String,
}

/// Runs the worker until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn run(global: Global, args: WorkerArgs) -> Result<(), Failure> {
    let ctx = Context::open(global).await?;
    let queue = ctx.queue(&args.queue).await?;
    let shutdown =
        crate::signal::cancel_on_stop("worker: shutting down; in-flight steps may finish");
    let name = format!("worker-{}", ctx.engine.config().owner);
    let concurrency = args.concurrency as usize;
    eprintln!(
        "worker {name}: {concurrency} at once, queue `{}`",
        args.queue
    );
    ::worker::work(
        ctx.engine.clone(),
        queue,
        &name,
        concurrency,
        shutdown.token(),
    )
    .await
    .map_err(|e| Failure::other(format!("worker failed: {e}")))
}
