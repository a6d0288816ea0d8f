//! The per-node summary printed when a node lifecycle run ends.
//!
//! Node workflows give each per-node step its node as subject; a node's
//! result is read from its steps alone: ok when all succeeded, else the
//! first step that failed (or is blocked, pending, running) with its error.

use engine::inspect::{StepView, step_views};
use engine::{RunState, StepStatus};
use serde::Serialize;
use serde_json::Value;

/// One node's result in a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NodeResult {
    /// The node.
    pub node: String,
    /// `ok`, `failed`, `blocked` (an earlier step it needs failed), `cancelled` or `pending`.
    pub result: String,
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
                None => ("ok", mine.last().and_then(|v| stage(v)), None),
                Some(v) => {
                    let error = v.attempts.last().and_then(|a| a.error.clone());
                    let result = match v.status {
                        StepStatus::Failed => "failed",
                        StepStatus::Blocked => "blocked",
                        _ if cancelled => "cancelled",
                        _ => "pending",
                    };
                    (result, stage(v), error)
                }
            };
            NodeResult {
                node,
                result: result.into(),
                step,
                error,
                ipv4,
            }
        })
        .collect()
}

/// The summary as a table for people.
pub fn table(results: &[NodeResult]) -> String {
    let mut out = format!("{:<14} {:<9} {:<16} DETAIL\n", "NODE", "RESULT", "ADDRESS");
    for r in results {
        let detail = match (r.result.as_str(), &r.step, &r.error) {
            ("ok", Some(s), _) => format!("done ({s})"),
            (_, Some(s), Some(e)) => format!("at {s}: {}", first_line(e)),
            (_, Some(s), None) => format!("at {s}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<14} {:<9} {:<16} {detail}\n",
            r.node,
            r.result,
            r.ipv4.as_deref().unwrap_or("-")
        ));
    }
    out
}

fn first_line(e: &str) -> String {
    let line = e.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_string()
    }
}
