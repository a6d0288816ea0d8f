//! Starting a checked request as a run, executing a run here with progress,
//! queueing one for a worker, and reporting how it ended.

use crate::args::{ExecArgs, Global};
use crate::{Context, Failure, progress, summary};
use engine::{Created, Observer, RunOutcome, RunStatus};
use serde_json::json;
use std::io::IsTerminal;
use tokio_util::sync::CancellationToken;
use workflows::cluster::ClusterError;
use workflows::request::{Checked, Request};

/// Checks `request` against the cluster repo; nothing is written.
pub async fn check(global: &Global, request: Request) -> Result<Checked, Failure> {
    Ok(request
        .check(&global.origin(), global.run_id.clone())
        .await?)
}

/// Asks `question` on the terminal; whether the answer was yes.
pub fn ask_yes(question: &str) -> Result<bool, Failure> {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::Other(e.into()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Asks the request's question (destroy) on a terminal, unless `batch`.
pub fn confirm(checked: &Checked, batch: bool) -> Result<(), Failure> {
    let Some(question) = &checked.confirm else {
        return Ok(());
    };
    if batch || !std::io::stdin().is_terminal() {
        return Ok(());
    }
    if ask_yes(question)? {
        Ok(())
    } else {
        Err(Failure::usage("not confirmed; nothing was changed"))
    }
}

/// Checks, then starts the run and executes it here (or queues it).
///
/// Targets that are servers without nix-infra's labels are offered for
/// adoption on a terminal (`cluster adopt` runs first, then this request);
/// anywhere else the refusal names the `cluster adopt` line to run.
pub async fn request(global: Global, request: Request, exec: &ExecArgs) -> Result<(), Failure> {
    let checked = check_or_adopt(&global, request, false, exec).await?;
    start(global, checked, exec).await
}

/// [`check`]; servers to adopt first are offered on a terminal (not with
/// `--batch` or `--detach`), and else refused with the line to run.
pub async fn check_or_adopt(
    global: &Global,
    request: Request,
    batch: bool,
    exec: &ExecArgs,
) -> Result<Checked, Failure> {
    let asks =
        !batch && !exec.detach && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    match request
        .clone()
        .check(&global.origin(), global.run_id.clone())
        .await
    {
        Err(ClusterError::Adoptable {
            nodes,
            fleet,
            message,
        }) if asks => {
            adopt_then(global, &nodes, fleet, &message, exec).await?;
            check(global, request).await
        }
        other => Ok(other?),
    }
}

/// Asks whether to adopt `nodes`, and does (a run of its own) if so.
async fn adopt_then(
    global: &Global,
    nodes: &[String],
    fleet: bool,
    message: &str,
    exec: &ExecArgs,
) -> Result<(), Failure> {
    eprintln!("{message}");
    if !ask_yes(&format!("adopt {} now?", nodes.join(", ")))? {
        return Err(Failure::usage("not adopted; nothing was changed"));
    }
    let adopt = Request::Adopt {
        target: nodes.join(" "),
        role: workflows::domain::Role::Cluster,
        fleet,
        ctrl_nodes: None,
    };
    let mut g = global.clone();
    g.run_id = None;
    let checked = check(&g, adopt).await?;
    Box::pin(start(g, checked, exec)).await
}

/// What to do with a run's own secret, given the run already stored under
/// the same id (if any).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SecretPlan {
    /// A new run: store it; remove it if the run cannot be created or once it succeeded.
    New,
    /// The same run, not finished: store the values given now; remove once it succeeded.
    Continue,
    /// Leave it alone: another run's (the create will refuse), or a finished one's.
    Keep,
    /// The same run, already succeeded: a leftover; remove it.
    Leftover,
}

async fn secret_plan(ctx: &Context, checked: &Checked) -> Result<SecretPlan, Failure> {
    let (Some(_), Some(id)) = (&checked.run_secret, &ctx.global.run_id) else {
        return Ok(SecretPlan::New);
    };
    let prior = match ctx.engine.load(id).await {
        Ok(state) => state.run,
        Err(engine::EngineError::Store(engine::StoreError::NotFound(_))) => {
            return Ok(SecretPlan::New);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match (prior.input == checked.input, prior.status) {
        (false, _) => SecretPlan::Keep,
        (true, RunStatus::Succeeded) => SecretPlan::Leftover,
        (true, s) if s.is_final() => SecretPlan::Keep,
        (true, _) => SecretPlan::Continue,
    })
}

/// Starts (or continues, with the same run id) a checked run, executes it
/// here or queues it, and reports it. The run's own secret is stored first,
/// kept while the run can be resumed, and removed once the run succeeded.
pub async fn start(mut global: Global, checked: Checked, exec: &ExecArgs) -> Result<(), Failure> {
    global.run_id = checked.run_id.clone();
    let ctx = Context::open(global).await?;
    let plan = secret_plan(&ctx, &checked).await?;
    let forget = |when: &[SecretPlan]| {
        if let Some(s) = checked.run_secret.as_ref().filter(|_| when.contains(&plan)) {
            s.forget();
        }
    };
    if let Some(s) = &checked.run_secret
        && matches!(plan, SecretPlan::New | SecretPlan::Continue)
    {
        s.store()?;
    }
    forget(&[SecretPlan::Leftover]);
    // From here a stop cancels the run (rather than leaving it pending):
    // `execute_outcome` sees it even if it came before it began.
    let _stop = crate::signal::listening();
    let created = ctx
        .engine
        .create(
            &checked.workflow,
            checked.input.clone(),
            ctx.global.run_id.clone(),
        )
        .await
        .inspect_err(|_| forget(&[SecretPlan::New]))?;
    let run = created.record().clone();
    match created {
        Created::New(_) => eprintln!("started run {} ({})", run.id, run.workflow),
        Created::Existing(_) => eprintln!("run {} already exists ({})", run.id, run.status),
    }
    if run.status.is_final() {
        return report(&ctx, &RunOutcome::from_record(&run)).await;
    }
    if exec.detach {
        return detach(&ctx, &run.id, &exec.queue).await;
    }
    // `execute` removes the run's own secret once it succeeded.
    execute(&ctx, &run.id, exec).await
}

/// Executes a run here and reports it.
pub async fn execute(ctx: &Context, run_id: &str, exec: &ExecArgs) -> Result<(), Failure> {
    let outcome = execute_outcome(ctx, run_id, exec).await?;
    // A run resumed to success no longer needs its own secret.
    if outcome.status == RunStatus::Succeeded
        && let Ok(state) = ctx.engine.load(run_id).await
    {
        workflows::request::forget_run_secret(&ctx.global.origin(), &state);
    }
    report(ctx, &outcome).await
}

/// Reports how a run ended: runs that act on nodes end with each node's
/// output (cmd, action) and a per-node summary.
async fn report(ctx: &Context, outcome: &RunOutcome) -> Result<(), Failure> {
    let state = ctx.engine.load(&outcome.run_id).await?;
    let nodes = workflows::report::nodes(&state);
    if nodes.is_empty() {
        return finish(ctx, outcome, None);
    }
    if !ctx.json() {
        print_output(ctx, &state).await?;
        println!("\n{}", summary::table(&nodes));
    }
    finish(ctx, outcome, Some(json!(nodes)))
}

/// Executes a run here with progress on stderr; Ctrl-C or SIGTERM cancels it,
/// a second Ctrl-C exits at once.
pub async fn execute_outcome(
    ctx: &Context,
    run_id: &str,
    exec: &ExecArgs,
) -> Result<RunOutcome, Failure> {
    let mut config = ctx.engine.config().clone();
    config.concurrency = exec.concurrency as usize;
    let engine = ctx.engine.clone().with_config(config);
    let (observer, events) = Observer::channel();
    let reporter = tokio::spawn(progress::report(events));
    let stop = crate::signal::cancel_on_stop(
        "cancelling: waiting for in-flight steps to stop (Ctrl-C again to quit now)",
    );
    let cancel = stop.token();
    let again = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            crate::signal::interrupted().await;
            std::process::exit(130);
        })
    };
    // As a worker does: the run waits for its nodes' locks, so two runs
    // never act on one node at once, whoever executes them.
    let state = engine.load(run_id).await?;
    let result =
        worker::execute_locked(&engine, state, cancel, CancellationToken::new(), observer).await;
    again.abort();
    let _ = reporter.await;
    match result? {
        Some(outcome) => Ok(outcome),
        None => Err(Failure::other(format!("run {run_id} was not started"))),
    }
}

/// Prints a run's final line (with `nodes`, for runs on nodes) and maps its
/// status to the exit status.
pub fn finish(
    ctx: &Context,
    outcome: &RunOutcome,
    nodes: Option<serde_json::Value>,
) -> Result<(), Failure> {
    if ctx.json() {
        let mut line = json!({
            "id": outcome.run_id,
            "status": outcome.status,
            "error": outcome.error,
            "failed_steps": outcome.failed_steps,
        });
        if let Some(n) = nodes {
            line["nodes"] = n;
        }
        println!("{line}");
    } else {
        println!("run {} {}", outcome.run_id, outcome.status);
        if let Some(e) = outcome.error.as_ref().filter(|e| *e != "cancelled") {
            println!("  {e}");
        }
        if outcome.status != RunStatus::Succeeded {
            println!(
                "  inspect: nix-infra runs show {id}\n  resume:  nix-infra runs resume {id}",
                id = outcome.run_id
            );
        }
    }
    if outcome.status == RunStatus::Succeeded {
        Ok(())
    } else {
        Err(Failure::RunNotSucceeded)
    }
}

/// Queues a run for a worker and prints its id.
pub async fn detach(ctx: &Context, run_id: &str, queue: &str) -> Result<(), Failure> {
    let q = ctx.queue(queue).await?;
    let added = q
        .enqueue(run_id)
        .await
        .map_err(|e| Failure::Database(e.into()))?;
    if ctx.json() {
        println!(
            "{}",
            json!({"id": run_id, "status": "pending", "queue": queue})
        );
    } else {
        let how = if added { "queued" } else { "already queued" };
        println!("run {run_id} {how} on `{queue}`; a `nix-infra worker` will execute it");
    }
    Ok(())
}

/// Each node's output of a command run, `node | line`, from the run's logs.
async fn print_output(ctx: &Context, state: &engine::RunState) -> Result<(), Failure> {
    for out in workflows::report::command_output(&ctx.engine, state).await? {
        for line in &out.lines {
            println!("{:<14}| {line}", out.node);
        }
    }
    Ok(())
}
