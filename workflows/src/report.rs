//! What a run did on each node: its result per node, and the output of the
//! commands it ran there (`cmd`, `action`), for the CLI, the API and MCP.
//!
//! Node workflows give each per-node step its node as subject; a node's
//! result is read from its steps alone: ok when all succeeded, else the
//! first step that failed (or is blocked, pending, running) with its error.

use engine::inspect::{StepView, step_views};
use engine::{AttemptRecord, LogLine, Millis, RunRecord};
use engine::{RunState, StepStatus};
use serde::Serialize;
use serde_json::{Value, json};

/// How a node came out of a run.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeOutcome {
    /// Every step on it succeeded.
    Ok,
    /// A step on it failed.
    Failed,
    /// An earlier step it needs failed.
    Blocked,
    /// The run was cancelled before it was done.
    Cancelled,
    /// Not done yet.
    Pending,
}

impl std::fmt::Display for NodeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeOutcome::Ok => "ok",
            NodeOutcome::Failed => "failed",
            NodeOutcome::Blocked => "blocked",
            NodeOutcome::Cancelled => "cancelled",
            NodeOutcome::Pending => "pending",
        })
    }
}

/// One node's result in a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NodeResult {
    /// The node.
    pub node: String,
    /// How the node came out.
    pub result: NodeOutcome,
    /// The step that failed or stopped the node, or the last one done.
    pub step: Option<String>,
    /// Why, when it failed.
    pub error: Option<String>,
    /// Its public address, once known.
    pub ipv4: Option<String>,
}

/// The result of every node a run touched, in plan order.
pub fn nodes(state: &RunState) -> Vec<NodeResult> {
    let views = step_views(state);
    let mut order: Vec<String> = Vec::new();
    for v in &views {
        if let Some(node) = v.subject.as_deref()
            && !order.iter().any(|n| n == node)
        {
            order.push(node.to_string());
        }
    }
    let cancelled = state.run.status == engine::RunStatus::Cancelled;
    // Addresses a run's `locate` step found, by node.
    let located: std::collections::BTreeMap<String, String> = state
        .attempts
        .iter()
        .filter_map(|a| a.output.as_ref()?.get("servers")?.as_object())
        .flat_map(|m| m.iter())
        .filter_map(|(n, s)| Some((n.clone(), s["ipv4"].as_str()?.to_string())))
        .collect();
    order
        .into_iter()
        .map(|node| {
            let mine: Vec<_> = views
                .iter()
                .filter(|v| v.subject.as_deref() == Some(node.as_str()))
                .collect();
            let ipv4 = mine
                .iter()
                .flat_map(|v| v.attempts.iter())
                .filter_map(|a| a.output.as_ref())
                .find_map(|o| o.get("ipv4").and_then(Value::as_str).map(str::to_string))
                .or_else(|| located.get(&node).cloned());
            // The stage: the name without its `/<node>`.
            let stage = |v: &StepView| {
                let own = format!("/{node}");
                Some(v.name.strip_suffix(&own).unwrap_or(&v.name).to_string())
            };
            let stuck = mine.iter().find(|v| v.status != StepStatus::Succeeded);
            let (result, step, error) = match stuck {
                None => (NodeOutcome::Ok, mine.last().and_then(|v| stage(v)), None),
                Some(v) => {
                    let error = v.attempts.last().and_then(|a| a.error.clone());
                    let result = match v.status {
                        StepStatus::Failed => NodeOutcome::Failed,
                        StepStatus::Blocked => NodeOutcome::Blocked,
                        _ if cancelled => NodeOutcome::Cancelled,
                        _ => NodeOutcome::Pending,
                    };
                    (result, stage(v), error)
                }
            };
            NodeResult {
                node,
                result,
                step,
                error,
                ipv4,
            }
        })
        .collect()
}

/// One node's output of a command a run ran there.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodeOutput {
    /// The node.
    pub node: String,
    /// The lines its last attempt printed (stdout and stderr, as logged;
    /// an output stored as a secret is never logged).
    pub lines: Vec<String>,
}

/// Each node's output of the commands of a run (`cmd`, `action`), from the
/// run's logs: only the last attempt's lines, so a resumed command shows
/// what it last printed.
pub async fn command_output(
    engine: &engine::Engine,
    state: &RunState,
) -> Result<Vec<NodeOutput>, engine::EngineError> {
    use crate::node::kinds::{Action, Cmd};
    use engine::Step;
    let mut out = Vec::new();
    let commands = state
        .run
        .plan
        .steps
        .iter()
        .filter(|s| s.kind == Cmd::KIND || s.kind == Action::KIND);
    for step in commands {
        let node = step.subject().unwrap_or(&step.name).to_string();
        let lines = engine.logs(&state.run.id, Some(&step.name)).await?;
        let last = lines.iter().map(|l| l.attempt).max();
        let lines = lines
            .into_iter()
            .filter(|l| Some(l.attempt) == last)
            .map(|l| l.line)
            .collect();
        out.push(NodeOutput { node, lines });
    }
    Ok(out)
}

/// An RFC 3339 timestamp with milliseconds, in UTC.
pub fn timestamp(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// How long an attempt took, once it finished.
pub fn duration_ms(a: &AttemptRecord) -> Option<i64> {
    a.finished_at.map(|f| f - a.started_at)
}

/// `{"id","workflow","status","created_at",…}` for `runs list`.
pub fn run_summary(r: &RunRecord) -> Value {
    json!({
        "id": r.id,
        "workflow": r.workflow,
        "status": r.status,
        "created_at": timestamp(r.created_at),
        "finished_at": r.finished_at.map(timestamp),
        "error": r.error,
        "abandoned": r.is_abandoned(engine::now_millis()),
    })
}

/// The full `runs show` object.
pub fn run_detail(state: &RunState, steps: &[StepView]) -> Value {
    let r = &state.run;
    json!({
        "id": r.id,
        "workflow": r.workflow,
        "version": r.version,
        "status": r.status,
        "abandoned": r.is_abandoned(engine::now_millis()),
        "error": r.error,
        "created_at": timestamp(r.created_at),
        "finished_at": r.finished_at.map(timestamp),
        "forked_from": r.forked_from.as_ref().map(|(run, step)| json!({"run": run, "step": step})),
        "lease": r.lease_owner.as_ref().map(|o| json!({
            "owner": o,
            "epoch": r.lease_epoch,
            "expires_at": r.lease_expires_at.map(timestamp),
        })),
        "steps": steps.iter().map(|s| json!({
            "name": s.name,
            "status": s.status,
            "depends_on": s.deps,
            "attempts": s.attempts.iter().map(|a| json!({
                "number": a.number,
                "status": a.status,
                "started_at": timestamp(a.started_at),
                "finished_at": a.finished_at.map(timestamp),
                "duration_ms": duration_ms(a),
                "error": a.error,
                "copied_from": a.copied_from,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// One log line as JSON.
pub fn log_json(l: &LogLine) -> Value {
    json!({
        "at": timestamp(l.at),
        "step": l.step,
        "attempt": l.attempt,
        "level": l.level,
        "line": l.line,
    })
}
