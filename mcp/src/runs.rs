//! nix-infra's own run tools: `runs_list`, `run_show` and `run_logs` read
//! the state database; `run_resume` and `run_cancel` (only with
//! `--allow-changes`) act on a run as `runs resume` and `runs cancel` do.

use crate::Mcp;
use crate::reply::{ok, refused, unavailable, wrap};
use engine::{CancelOutcome, EngineError, RunFilter, RunStatus, StoreError};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use workflows::report::{log_json, run_detail, run_summary};

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ListArgs {
    /// Only runs with these statuses, comma-separated (pending, running,
    /// succeeded, failed, cancelled).
    #[serde(default)]
    status: Option<String>,
    /// Only runs of this workflow (node.update, node.cmd, …).
    #[serde(default)]
    workflow: Option<String>,
    /// At most this many, newest first (default 20).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct RunArgs {
    /// The run id.
    id: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct LogsArgs {
    /// The run id.
    id: String,
    /// Only this step's lines (`cmd/worker1`).
    #[serde(default)]
    step: Option<String>,
    /// Only the last this many lines (default 200).
    #[serde(default)]
    tail: Option<usize>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ResumeArgs {
    /// The run id.
    id: String,
    /// Run again the commands that may already have run (a node command
    /// whose connection dropped): the run refuses to guess otherwise.
    #[serde(default)]
    rerun_uncertain: bool,
}

fn engine_error(e: EngineError) -> CallToolResult {
    match e {
        EngineError::Store(StoreError::NotFound(m)) => refused(format!("no such run: {m}")),
        EngineError::InvalidRunId(_) => refused(e),
        other => unavailable(other),
    }
}

#[tool_router(router = run_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "runs_list",
        description = "The nix-infra runs in the state database, newest first: id, workflow, \
            status, when, error.",
        annotations(read_only_hint = true)
    )]
    async fn runs_list(&self, Parameters(a): Parameters<ListArgs>) -> CallToolResult {
        let mut statuses = Vec::new();
        for s in a
            .status
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match s.parse::<RunStatus>() {
                Ok(s) => statuses.push(s),
                Err(e) => return refused(format!("status: {e}")),
            }
        }
        let filter = RunFilter {
            workflow: a.workflow,
            statuses,
            limit: Some(i64::from(a.limit.unwrap_or(20))),
            id_prefix: None,
        };
        match self.shared.engine.list(&filter).await {
            Ok(runs) => ok(wrap(
                "runs",
                runs.iter().map(run_summary).collect::<Vec<_>>(),
            )),
            Err(e) => engine_error(e),
        }
    }

    #[tool(
        name = "run_show",
        description = "One run: its steps with every attempt, each node's result, the output of its \
            node commands, and its trace id.",
        annotations(read_only_hint = true)
    )]
    async fn run_show(&self, Parameters(a): Parameters<RunArgs>) -> CallToolResult {
        let engine = &self.shared.engine;
        let state = match engine.load(&a.id).await {
            Ok(s) => s,
            Err(e) => return engine_error(e),
        };
        let steps = engine::inspect::step_views(&state);
        let mut detail = run_detail(&state, &steps);
        detail["nodes"] = json!(workflows::report::nodes(&state));
        detail["output"] = json!(
            workflows::report::command_output(engine, &state)
                .await
                .unwrap_or_default()
        );
        detail["trace_id"] = json!(observability::traces::trace_id(&a.id).to_string());
        ok(detail)
    }

    #[tool(
        name = "run_logs",
        description = "A run's log lines (every step's, or one step's), the last `tail` of them.",
        annotations(read_only_hint = true)
    )]
    async fn run_logs(&self, Parameters(a): Parameters<LogsArgs>) -> CallToolResult {
        match self.shared.engine.logs(&a.id, a.step.as_deref()).await {
            Ok(lines) => {
                let tail = a.tail.unwrap_or(200);
                let skip = lines.len().saturating_sub(tail);
                let lines: Vec<Value> = lines[skip..].iter().map(log_json).collect();
                ok(json!({"id": a.id, "lines": lines, "left_out": skip}))
            }
            Err(e) => engine_error(e),
        }
    }
}

#[tool_router(router = run_control_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "run_resume",
        description = "Resume a run that failed, was cancelled or was left behind: steps that \
            succeeded are kept, the rest run again here (locked per node). A command that may \
            already have run is run again only with rerun_uncertain.",
        annotations(destructive_hint = true)
    )]
    async fn run_resume(
        &self,
        Parameters(a): Parameters<ResumeArgs>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let state = match self.shared.engine.load(&a.id).await {
            Ok(s) => s,
            Err(e) => return engine_error(e),
        };
        if state.run.status == RunStatus::Succeeded {
            return refused(format!("run {} already succeeded", a.id));
        }
        let uncertain = workflows::request::uncertain_steps(&state);
        if !uncertain.is_empty() && !a.rerun_uncertain {
            return refused(format!(
                "{}; call run_resume with rerun_uncertain: true to run it again",
                workflows::request::may_have_run(&a.id, &uncertain)
            ));
        }
        self.execute_run(a.id, ct).await
    }

    #[tool(
        name = "run_cancel",
        description = "Cancel a run: a pending one at once, a running one once its steps in flight stop.",
        annotations(destructive_hint = false)
    )]
    async fn run_cancel(&self, Parameters(a): Parameters<RunArgs>) -> CallToolResult {
        match self.shared.engine.cancel(&a.id).await {
            Ok(o) => {
                let said = match o {
                    CancelOutcome::Cancelled => "cancelled",
                    CancelOutcome::Requested => "requested",
                    CancelOutcome::AlreadyFinal(_) => "already finished",
                };
                ok(json!({"id": a.id, "cancel": said}))
            }
            Err(e) => engine_error(e),
        }
    }
}
