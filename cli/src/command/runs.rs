//! `nix-infra runs …`: start, resume, cancel, fork, list, show, logs, graph, trace.

use crate::args::{ExecArgs, Global};
use crate::start::{self, detach, execute};
use crate::{Context, Failure, views};
use clap::Subcommand;
use engine::inspect::{mermaid, step_views};
use engine::{CancelOutcome, RunFilter, RunStatus};
use workflows::request::Request;

/// Parses `--input` as JSON.
fn parse_input(input: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(input)
        .map_err(|e| Failure::usage(format!("--input is not valid JSON: {e}")))
}

/// `nix-infra runs …`
#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Start a run of WORKFLOW and execute it here, showing progress.
    ///
    /// Exits 0 only if the run succeeded. Press Ctrl-C to cancel; the run can
    /// be resumed later with `runs resume`.
    Start {
        /// The workflow, e.g. diag.chain (see `nix-infra workflows`).
        workflow: String,
        /// The run input as JSON.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        input: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Continue a failed, cancelled or abandoned run; completed steps are kept.
    ///
    /// If the run's previous executor died, this waits for its lease to lapse
    /// (at most --lease-ttl of the dead process). Exits 0 only if the run then
    /// succeeds. With --failed, resumes every failed or abandoned run (for CI).
    Resume {
        /// The run (or use --failed).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        id: Option<String>,
        /// Resume every failed or abandoned run, oldest first.
        #[arg(long)]
        failed: bool,
        /// With --failed: only runs of this workflow.
        #[arg(long, requires = "failed")]
        workflow: Option<String>,
        /// Run again the steps that may have run already (a `cmd` or
        /// `action` whose connection was lost mid-way). Without it, a
        /// terminal is asked, and a script (or --batch) is refused.
        #[arg(long)]
        rerun_uncertain: bool,
        /// Never ask: steps that may have run are refused unless --rerun-uncertain.
        #[arg(long)]
        batch: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Ask a run to stop: in-flight steps are told to stop, no new step starts.
    Cancel {
        /// The run.
        id: String,
    },
    /// Start a new run that keeps the outputs of every step not downstream
    /// of STEP and re-runs STEP and everything after it.
    Fork {
        /// The run to fork.
        id: String,
        /// The first step to run again.
        #[arg(long, value_name = "STEP")]
        from_step: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs with these statuses (pending, running, succeeded, failed, cancelled).
        #[arg(long, value_delimiter = ',')]
        status: Vec<engine::RunStatus>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a run: every step with its attempts, durations and errors.
    Show {
        /// The run.
        id: String,
    },
    /// Print a run's log lines.
    Logs {
        /// The run.
        id: String,
        /// Only this step's lines.
        #[arg(long)]
        step: Option<String>,
    },
    /// Print a run's plan as a Mermaid flowchart coloured by step status.
    Graph {
        /// The run.
        id: String,
    },
    /// Print the OpenTelemetry trace id of a run (the same for every execution).
    Trace {
        /// The run.
        id: String,
    },
}

/// Runs one `runs` subcommand.
pub async fn run(global: Global, cmd: RunsCommand) -> Result<(), Failure> {
    if let RunsCommand::Start {
        workflow,
        input,
        exec,
    } = cmd
    {
        // Refused before the database is even opened: a typo leaves nothing behind.
        let input = parse_input(&input)?;
        return start::request(global, Request::Workflow { workflow, input }, &exec).await;
    }
    let ctx = Context::open(global).await?;
    let ctx = &ctx;
    match cmd {
        RunsCommand::Start { .. } => unreachable!("started above"),
        RunsCommand::Resume {
            id,
            failed,
            workflow,
            rerun_uncertain,
            batch,
            exec,
        } => {
            let rerun = Rerun {
                uncertain: rerun_uncertain,
                batch,
            };
            if exec.detach {
                return Err(Failure::usage(
                    "`runs resume` executes here; --detach is for commands that start a run",
                ));
            }
            let Some(id) = id.filter(|_| !failed) else {
                return resume_failed(ctx, workflow, &exec, rerun).await;
            };
            let state = ctx.engine.load(&id).await?;
            rerun.confirm(&state)?;
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
/// What `runs resume` may run again of what may have run already.
#[derive(Clone, Copy)]
struct Rerun {
    uncertain: bool,
    batch: bool,
}

impl Rerun {
    /// Asks (on a terminal) or refuses (elsewhere) before a resume would run
    /// again a step that may have run.
    fn confirm(self, state: &engine::RunState) -> Result<(), Failure> {
        use std::io::IsTerminal;
        let steps = workflows::request::uncertain_steps(state);
        if steps.is_empty() || self.uncertain {
            return Ok(());
        }
        let what = workflows::request::may_have_run(&state.run.id, &steps);
        if self.batch || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Err(Failure::usage(format!(
                "{what}; resume with --rerun-uncertain to run it again"
            )));
        }
        if crate::start::ask_yes(&format!("{what}. Run again?"))? {
            Ok(())
        } else {
            Err(Failure::usage("not resumed; nothing was run again"))
        }
    }
}

async fn resume_failed(
    ctx: &Context,
    workflow: Option<String>,
    exec: &ExecArgs,
    rerun: Rerun,
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
    // A stop between two runs ends the loop here, not the process mid-line.
    let _stop = crate::signal::listening();
    let mut resumed = 0;
    for r in &runs {
        if crate::signal::stop_was_requested() {
            eprintln!("stopping: {} run(s) not resumed", runs.len() - resumed);
            break;
        }
        resumed += 1;
        match rerun.confirm(&ctx.engine.load(&r.id).await?) {
            Ok(()) => {}
            Err(Failure::Usage(refused)) => {
                eprintln!("{refused}");
                failures += 1;
                continue;
            }
            Err(other) => return Err(other),
        }
        eprintln!("resuming run {} ({}, {})", r.id, r.workflow, r.status);
        if execute(ctx, &r.id, exec).await.is_err() {
            failures += 1;
        }
    }
    eprintln!("{resumed} resumed, {failures} still not succeeded");
    if resumed < runs.len() {
        return Err(Failure::RunNotSucceeded);
    }
    if failures == 0 {
        Ok(())
    } else {
        Err(Failure::RunNotSucceeded)
    }
}
