//! `nix-infra runs …`: start, resume, cancel, fork, list, show, logs, graph.

use crate::args::{ExecArgs, RunsCommand};
use crate::{Context, Failure, progress, views};
use anyhow::anyhow;
use engine::inspect::{mermaid, step_views};
use engine::{CancelOutcome, Created, Observer, RunFilter, RunOutcome, RunStatus};
use tokio_util::sync::CancellationToken;

/// Parses `--input` as JSON.
fn parse_input(input: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(input)
        .map_err(|e| Failure::Usage(anyhow!("--input is not valid JSON: {e}")))
}

/// Checks that `workflow` exists and plans `input`, without touching any state.
pub fn check_start(workflow: &str, input: &str, run_id: Option<&str>) -> Result<(), Failure> {
    if let Some(id) = run_id {
        engine::validate_run_id(id)?;
    }
    let input = parse_input(input)?;
    let registry = workflows::registry();
    let wf = registry
        .get(workflow)
        .ok_or_else(|| engine::EngineError::UnknownWorkflow {
            name: workflow.to_string(),
            known: registry.iter().map(|w| w.name().to_string()).collect(),
        })?;
    wf.plan(&input).map_err(engine::EngineError::from)?;
    Ok(())
}

/// Runs one `runs` subcommand.
pub async fn run(ctx: &Context, cmd: RunsCommand) -> Result<(), Failure> {
    match cmd {
        RunsCommand::Start {
            workflow,
            input,
            exec,
        } => {
            let input = parse_input(&input)?;
            let created = ctx
                .engine
                .create(&workflow, input, ctx.global.run_id.clone())
                .await?;
            let run = created.record();
            match &created {
                Created::New(_) => eprintln!("started run {} ({})", run.id, run.workflow),
                Created::Existing(_) => {
                    eprintln!("run {} already exists ({})", run.id, run.status)
                }
            }
            if run.status.is_final() {
                return finish(ctx, &RunOutcome::from_record(run), None);
            }
            if exec.detach {
                return detach(ctx, &run.id.clone(), &exec.queue).await;
            }
            execute(ctx, &run.id.clone(), &exec).await
        }
        RunsCommand::Resume {
            id,
            failed,
            workflow,
            exec,
        } => {
            if exec.detach {
                return Err(Failure::Usage(anyhow!(
                    "`runs resume` executes here; --detach is for commands that start a run"
                )));
            }
            let Some(id) = id.filter(|_| !failed) else {
                return resume_failed(ctx, workflow, &exec).await;
            };
            let state = ctx.engine.load(&id).await?;
            if state.run.status == RunStatus::Succeeded {
                eprintln!("run {id} already succeeded; nothing to resume");
            } else {
                eprintln!(
                    "resuming run {id} ({}, {})",
                    state.run.workflow, state.run.status
                );
            }
            execute(ctx, &id, &exec).await
        }
        RunsCommand::Cancel { id } => {
            let outcome = ctx.engine.cancel(&id).await?;
            let (status, text) = match outcome {
                CancelOutcome::Requested => (
                    "requested",
                    format!("cancel requested; the executor of run {id} will stop it shortly"),
                ),
                CancelOutcome::Cancelled => ("cancelled", format!("run {id} cancelled")),
                CancelOutcome::AlreadyFinal(s) => (
                    s.as_str(),
                    format!("run {id} already {s}; nothing to cancel"),
                ),
            };
            if ctx.json() {
                println!("{}", serde_json::json!({"id": id, "cancel": status}));
            } else {
                println!("{text}");
            }
            Ok(())
        }
        RunsCommand::Fork {
            id,
            from_step,
            exec,
        } => {
            let run = ctx
                .engine
                .fork(&id, &from_step, ctx.global.run_id.clone())
                .await?;
            eprintln!("forked run {id} at step {from_step} as run {}", run.id);
            if exec.detach {
                return detach(ctx, &run.id, &exec.queue).await;
            }
            execute(ctx, &run.id, &exec).await
        }
        RunsCommand::List {
            workflow,
            status,
            limit,
        } => {
            let runs = ctx
                .engine
                .list(&RunFilter {
                    workflow,
                    statuses: status,
                    limit: Some(limit),
                    id_prefix: None,
                })
                .await?;
            if ctx.json() {
                let list: Vec<_> = runs.iter().map(views::run_summary).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                print!("{}", views::list_text(&runs));
            }
            Ok(())
        }
        RunsCommand::Show { id } => {
            let state = ctx.engine.load(&id).await?;
            let steps = step_views(&state);
            if ctx.json() {
                println!("{}", views::run_detail(&state, &steps));
            } else {
                print!("{}", views::run_text(&state, &steps));
            }
            Ok(())
        }
        RunsCommand::Logs { id, step } => {
            let lines = ctx.engine.logs(&id, step.as_deref()).await?;
            if ctx.json() {
                let list: Vec<_> = lines.iter().map(views::log_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for l in &lines {
                    println!("{}", views::log_text(l));
                }
            }
            Ok(())
        }
        RunsCommand::Graph { id } => {
            let state = ctx.engine.load(&id).await?;
            print!("{}", mermaid(&state));
            Ok(())
        }
        RunsCommand::Trace { id } => {
            ctx.engine.load(&id).await?;
            let trace = observability::traces::trace_id(&id).to_string();
            if ctx.json() {
                println!("{}", serde_json::json!({"id": id, "trace_id": trace}));
            } else {
                println!("{trace}");
            }
            Ok(())
        }
    }
}

/// Resumes every failed run and every abandoned one (running, lease lapsed), oldest first.
async fn resume_failed(
    ctx: &Context,
    workflow: Option<String>,
    exec: &ExecArgs,
) -> Result<(), Failure> {
    let now = engine::now_millis();
    let mut runs = ctx
        .engine
        .list(&RunFilter {
            workflow,
            statuses: vec![RunStatus::Failed, RunStatus::Running],
            limit: None,
            id_prefix: None,
        })
        .await?;
    runs.retain(|r| r.status == RunStatus::Failed || r.is_abandoned(now));
    runs.reverse();
    if runs.is_empty() {
        eprintln!("no failed or abandoned runs");
        return Ok(());
    }
    let mut failures = 0;
    for r in &runs {
        eprintln!("resuming run {} ({}, {})", r.id, r.workflow, r.status);
        if execute(ctx, &r.id, exec).await.is_err() {
            failures += 1;
        }
    }
    eprintln!("{} resumed, {failures} still not succeeded", runs.len());
    if failures == 0 {
        Ok(())
    } else {
        Err(Failure::RunNotSucceeded)
    }
}

/// Queues a run for a worker and prints its id.
pub async fn detach(ctx: &Context, run_id: &str, queue: &str) -> Result<(), Failure> {
    let q = crate::worker::open_queue(ctx, queue).await?;
    let added = q
        .enqueue(run_id)
        .await
        .map_err(|e| Failure::Database(e.into()))?;
    if ctx.json() {
        println!(
            "{}",
            serde_json::json!({"id": run_id, "status": "pending", "queue": queue})
        );
    } else {
        let how = if added { "queued" } else { "already queued" };
        println!("run {run_id} {how} on `{queue}`; a `nix-infra worker` will execute it");
    }
    Ok(())
}

/// Executes a run here with progress on stderr; Ctrl-C or SIGTERM cancels it.
/// Node lifecycle runs end with their per-node summary.
pub async fn execute(ctx: &Context, run_id: &str, exec: &ExecArgs) -> Result<(), Failure> {
    let workflow = ctx.engine.load(run_id).await?.run.workflow;
    if workflow.starts_with("node.") || workflow.starts_with("cluster.") {
        return crate::lifecycle::execute(ctx, run_id, exec).await;
    }
    let outcome = execute_outcome(ctx, run_id, exec).await?;
    finish(ctx, &outcome, None)
}

/// Executes a run here with progress on stderr; Ctrl-C or SIGTERM cancels it.
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
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(cancel.clone()));
    let result = engine.execute(run_id, cancel, observer).await;
    signals.abort();
    let _ = reporter.await;
    Ok(result?)
}

/// Prints a run's final line (with `nodes`, for node lifecycles) and maps
/// its status to the exit status.
pub fn finish(
    ctx: &Context,
    outcome: &RunOutcome,
    nodes: Option<serde_json::Value>,
) -> Result<(), Failure> {
    if ctx.json() {
        let mut line = serde_json::json!({
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

/// Cancels on the first Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
async fn stop_on_signal(cancel: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("cancelling: waiting for in-flight steps to stop (Ctrl-C again to quit now)");
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
