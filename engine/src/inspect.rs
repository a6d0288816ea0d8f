//! Read models for users: a run's steps with derived statuses, and its graph as Mermaid.

use crate::model::{AttemptRecord, AttemptStatus, RunState, RunStatus, StepStatus, now_millis};
use std::collections::HashMap;

/// One step of a run as users see it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepView {
    /// The step name.
    pub name: String,
    /// The handler kind.
    pub kind: String,
    /// What it acts on ([`crate::StepSpec::subject()`]: stored, or derived for old plans).
    pub subject: Option<String>,
    /// Its dependencies.
    pub deps: Vec<String>,
    /// Derived status.
    pub status: StepStatus,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// (status, fill, stroke) of each step status, for the graph and the dashboard.
pub const STATUS_COLOURS: [(&str, &str, &str); 7] = [
    ("pending", "#eeeeee", "#9e9e9e"),
    ("running", "#bbdefb", "#1565c0"),
    ("retrying", "#fff9c4", "#f9a825"),
    ("succeeded", "#c8e6c9", "#2e7d32"),
    ("failed", "#ffcdd2", "#c62828"),
    ("cancelled", "#ffe0b2", "#ef6c00"),
    ("blocked", "#f5f5f5", "#bdbdbd"),
];

/// Derives each step's status from its attempts and its dependencies, in plan order.
pub fn step_views(state: &RunState) -> Vec<StepView> {
    let mut by_step: HashMap<&str, Vec<AttemptRecord>> = HashMap::new();
    for a in &state.attempts {
        by_step.entry(a.step.as_str()).or_default().push(a.clone());
    }
    let live = state.run.status == RunStatus::Running && !state.run.is_abandoned(now_millis());
    let mut status: HashMap<String, StepStatus> = HashMap::new();
    // Resolve in dependency order so `Blocked` propagates; plans are acyclic.
    let plan = &state.run.plan;
    let mut remaining: Vec<usize> = (0..plan.steps.len()).collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|&i| {
            let s = &plan.steps[i];
            if !s.deps.iter().all(|d| status.contains_key(d)) {
                return true;
            }
            let own = match by_step.get(s.name.as_str()).and_then(|v| v.last()) {
                None => StepStatus::Pending,
                Some(a) => match a.status {
                    AttemptStatus::Succeeded | AttemptStatus::Copied => StepStatus::Succeeded,
                    AttemptStatus::Running if live => StepStatus::Running,
                    AttemptStatus::Running | AttemptStatus::Abandoned => StepStatus::Pending,
                    AttemptStatus::Failed | AttemptStatus::TimedOut
                        if live && a.retry_at.is_some() =>
                    {
                        StepStatus::Retrying
                    }
                    AttemptStatus::Failed | AttemptStatus::TimedOut => StepStatus::Failed,
                    AttemptStatus::Cancelled => StepStatus::Cancelled,
                },
            };
            let blocked = own == StepStatus::Pending
                && s.deps
                    .iter()
                    .any(|d| matches!(status[d], StepStatus::Failed | StepStatus::Blocked));
            status.insert(
                s.name.clone(),
                if blocked { StepStatus::Blocked } else { own },
            );
            false
        });
        if remaining.len() == before {
            break; // unreachable for validated plans; never loop forever on a corrupt one
        }
    }
    plan.steps
        .iter()
        .map(|s| StepView {
            name: s.name.clone(),
            kind: s.kind.clone(),
            subject: s.subject().map(str::to_string),
            deps: s.deps.clone(),
            status: status.get(&s.name).copied().unwrap_or(StepStatus::Pending),
            attempts: by_step.remove(s.name.as_str()).unwrap_or_default(),
        })
        .collect()
}

/// Renders the run's plan as a Mermaid flowchart, each step coloured by its status.
pub fn mermaid(state: &RunState) -> String {
    let views = step_views(state);
    let ids: HashMap<&str, String> = views
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), format!("s{i}")))
        .collect();
    let mut out = String::from("flowchart TD\n");
    for v in &views {
        let label = v.name.replace('"', "#quot;");
        out.push_str(&format!(
            "  {}[\"{label}<br/>{}\"]:::{}\n",
            ids[v.name.as_str()],
            v.status,
            v.status
        ));
    }
    for v in &views {
        for d in &v.deps {
            out.push_str(&format!(
                "  {} --> {}\n",
                ids[d.as_str()],
                ids[v.name.as_str()]
            ));
        }
    }
    for (status, fill, stroke) in STATUS_COLOURS {
        out.push_str(&format!(
            "  classDef {status} fill:{fill},stroke:{stroke}\n"
        ));
    }
    out
}
