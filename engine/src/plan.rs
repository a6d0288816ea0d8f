//! [`Plan`]: the persisted step graph of a run, and its validation.

use crate::typed::Step;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// How a step's retryable failures are retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts allowed per execution (the first try included); at least 1.
    pub max_attempts: u32,
    /// Wait before the second attempt, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Factor applied to the wait after every failed attempt.
    pub multiplier: f64,
    /// Upper bound of any single wait, in milliseconds.
    pub max_backoff_ms: u64,
    /// Fraction (0..=1) of each wait that is randomised away, to spread retries.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            multiplier: 2.0,
            max_backoff_ms: 60_000,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `failed` (1 = after the first failed attempt), before jitter.
    pub fn base_delay(&self, failed: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(failed.saturating_sub(1) as i32);
        let ms = (self.initial_backoff_ms as f64 * exp).min(self.max_backoff_ms as f64);
        Duration::from_millis(ms as u64)
    }

    /// The wait before retry number `failed`, with jitter applied from `unit` in [0, 1).
    pub fn delay(&self, failed: u32, unit: f64) -> Duration {
        let base = self.base_delay(failed).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        Duration::from_secs_f64(base * (1.0 - jitter))
    }
}

/// One node of the graph: what to run, after what, and how persistently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    /// Unique name within the run, e.g. `provision/worker1`.
    pub name: String,
    /// The handler that executes it, registered on the workflow.
    pub kind: String,
    /// Names of the steps whose success it waits for.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Parameters handed to the handler, fixed when the run is planned.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Retry policy for retryable failures.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Limit of one attempt, in milliseconds; `None` waits forever.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// What the step acts on (a node's name, say), for summaries, progress
    /// lines and span attributes; read it with [`StepSpec::subject()`], which
    /// also answers for plans stored before subjects existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl StepSpec {
    /// A step of `kind` named `name` with no dependencies and default policies.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        StepSpec {
            name: name.into(),
            kind: kind.into(),
            deps: Vec::new(),
            params: serde_json::Value::Null,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            subject: None,
        }
    }

    /// A step of kind [`Step::KIND`] named `name`, with `params` of the kind's
    /// own type: the kind string is the one the step declared.
    ///
    /// # Panics
    /// If `params` does not serialise to JSON (a map with non-string keys, a
    /// failing `Serialize` impl): a bug in the step's declaration, not an input.
    pub fn of<S: Step>(name: impl Into<String>, params: &S::Params) -> Self {
        let params = serde_json::to_value(params)
            .unwrap_or_else(|e| panic!("params of step kind `{}` are not JSON: {e}", S::KIND));
        StepSpec::new(name, S::KIND).params(params)
    }

    /// Sets what the step acts on (see [`StepSpec::subject()`]).
    pub fn on(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// What the step acts on: the stored subject, or, for a plan stored
    /// before steps had subjects, the part of the name after its first `/`
    /// (those plans named per-node steps `<stage>/<node>`).
    ///
    /// ```
    /// use engine::StepSpec;
    /// assert_eq!(StepSpec::new("config/w1", "config").on("w1").subject(), Some("w1"));
    /// let mut old = StepSpec::new("config/w1", "config");
    /// old.subject = None; // as read from an old plan
    /// assert_eq!(old.subject(), Some("w1"));
    /// assert_eq!(StepSpec::new("ctrl", "ctrl").subject(), None);
    /// ```
    pub fn subject(&self) -> Option<&str> {
        self.subject
            .as_deref()
            .or_else(|| self.name.split_once('/').map(|(_, s)| s))
    }

    /// Adds a dependency.
    pub fn after(mut self, dep: impl Into<String>) -> Self {
        self.deps.push(dep.into());
        self
    }

    /// Sets the handler parameters.
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis() as u64);
        self
    }
}

/// Why a plan was rejected before anything ran.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The plan has no steps.
    #[error("the plan has no steps")]
    Empty,
    /// Two or more steps share a name.
    #[error("duplicate step names: {}", .0.join(", "))]
    Duplicate(Vec<String>),
    /// A step depends on a step that is not in the plan.
    #[error("unknown dependencies: {}", joined(.0, |(s, d)| format!("{s} -> {d}")))]
    UnknownDependency(Vec<(String, String)>),
    /// The dependencies form a cycle; the steps on it are listed.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A step names a handler the workflow does not have.
    #[error("steps with unknown kinds: {}", joined(.0, |(s, k)| format!("{s} ({k})")))]
    UnknownKind(Vec<(String, String)>),
    /// A retry policy or timeout makes no sense.
    #[error("invalid policy on step {step}: {reason}")]
    InvalidPolicy {
        /// The step.
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// The workflow could not build a plan from the input.
    #[error("invalid input: {0}")]
    Input(String),
}

/// Each pair as `show` writes it, joined with ", ".
fn joined(pairs: &[(String, String)], show: impl Fn(&(String, String)) -> String) -> String {
    pairs.iter().map(show).collect::<Vec<_>>().join(", ")
}

/// The step graph of one run, fixed when the run starts and persisted with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The steps, in a stable order (the order the workflow produced them).
    pub steps: Vec<StepSpec>,
}

impl Plan {
    /// A plan from its steps; call [`Plan::validate`] before use.
    pub fn new(steps: Vec<StepSpec>) -> Self {
        Plan { steps }
    }

    /// Looks a step up by name.
    pub fn step(&self, name: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Checks the graph: non-empty, unique names, known dependencies, no cycle, sane policies.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.steps.is_empty() {
            return Err(PlanError::Empty);
        }
        let mut seen = HashSet::new();
        let dups: BTreeSet<String> = self
            .steps
            .iter()
            .filter(|s| !seen.insert(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect();
        if !dups.is_empty() {
            return Err(PlanError::Duplicate(dups.into_iter().collect()));
        }
        let unknown: Vec<(String, String)> = self
            .steps
            .iter()
            .flat_map(|s| s.deps.iter().map(move |d| (s, d)))
            .filter(|(_, d)| !seen.contains(d.as_str()))
            .map(|(s, d)| (s.name.clone(), d.clone()))
            .collect();
        if !unknown.is_empty() {
            return Err(PlanError::UnknownDependency(unknown));
        }
        for s in &self.steps {
            if s.retry.max_attempts == 0 {
                return Err(PlanError::InvalidPolicy {
                    step: s.name.clone(),
                    reason: "max_attempts must be at least 1".into(),
                });
            }
            if s.timeout_ms == Some(0) {
                return Err(PlanError::InvalidPolicy {
                    step: s.name.clone(),
                    reason: "timeout must be positive".into(),
                });
            }
        }
        if let Some(cycle) = self.find_cycle() {
            return Err(PlanError::Cycle(cycle));
        }
        Ok(())
    }

    /// Returns one cycle (first step repeated at the end), if the graph has any.
    fn find_cycle(&self) -> Option<Vec<String>> {
        let index: HashMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        // 0 = unvisited, 1 = on stack, 2 = done. Iterative DFS to survive deep chains.
        let mut state = vec![0u8; self.steps.len()];
        for root in 0..self.steps.len() {
            if state[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = 1;
            while let Some((node, next)) = stack.last_mut() {
                let deps = &self.steps[*node].deps;
                if *next < deps.len() {
                    let dep = index[deps[*next].as_str()];
                    *next += 1;
                    match state[dep] {
                        0 => {
                            state[dep] = 1;
                            stack.push((dep, 0));
                        }
                        1 => {
                            let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                            let mut cycle: Vec<String> = stack[start..]
                                .iter()
                                .map(|(n, _)| self.steps[*n].name.clone())
                                .collect();
                            cycle.push(self.steps[dep].name.clone());
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    state[*node] = 2;
                    stack.pop();
                }
            }
        }
        None
    }

    /// The named step and every step that depends on it, directly or not.
    pub fn downstream_of(&self, name: &str) -> BTreeSet<String> {
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in &self.steps {
            for d in &s.deps {
                dependents
                    .entry(d.as_str())
                    .or_default()
                    .push(s.name.as_str());
            }
        }
        let mut out = BTreeSet::new();
        let mut todo = vec![name];
        while let Some(n) = todo.pop() {
            if out.insert(n.to_string()) {
                todo.extend(dependents.get(n).into_iter().flatten().copied());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(names: &[(&str, &[&str])]) -> Plan {
        Plan::new(
            names
                .iter()
                .map(|(n, deps)| {
                    deps.iter()
                        .fold(StepSpec::new(*n, "noop"), |s, d| s.after(*d))
                })
                .collect(),
        )
    }

    #[test]
    fn rejects_each_kind_of_bad_plan_naming_the_steps() {
        assert_eq!(Plan::default().validate(), Err(PlanError::Empty));
        assert_eq!(
            chain(&[("a", &[]), ("a", &[])]).validate(),
            Err(PlanError::Duplicate(vec!["a".into()]))
        );
        assert_eq!(
            chain(&[("a", &["ghost"])]).validate(),
            Err(PlanError::UnknownDependency(vec![(
                "a".into(),
                "ghost".into()
            )]))
        );
        let err = chain(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])])
            .validate()
            .unwrap_err();
        let PlanError::Cycle(cycle) = &err else {
            panic!("expected a cycle, got {err}")
        };
        assert_eq!(cycle.first(), cycle.last());
        let names: BTreeSet<_> = cycle.iter().map(String::as_str).collect();
        assert_eq!(names, BTreeSet::from(["a", "b", "c"]));
        assert!(err.to_string().contains("a") && err.to_string().contains("c"));
        assert_eq!(
            chain(&[("self", &["self"])]).validate(),
            Err(PlanError::Cycle(vec!["self".into(), "self".into()]))
        );
    }

    #[test]
    fn accepts_a_diamond_and_finds_downstream() {
        let plan = chain(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        plan.validate().unwrap();
        assert_eq!(
            plan.downstream_of("b"),
            BTreeSet::from(["b".to_string(), "d".to_string()])
        );
    }

    #[test]
    fn subjects_are_stored_only_when_set_and_derived_for_old_plans() {
        let plain = serde_json::to_value(StepSpec::new("ctrl", "ctrl")).unwrap();
        assert!(plain.get("subject").is_none(), "{plain}");
        let on = serde_json::to_value(StepSpec::new("x", "x").on("w1")).unwrap();
        assert_eq!(on["subject"], "w1");
        // A step as today's plans stored it before subjects existed.
        let old: StepSpec = serde_json::from_value(serde_json::json!({
            "name": "overlay/w1", "kind": "overlay", "deps": ["ctrl"],
            "params": {"node": "w1"}, "retry": RetryPolicy::default(), "timeout_ms": null
        }))
        .unwrap();
        assert_eq!((old.subject.as_deref(), old.subject()), (None, Some("w1")));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 500,
            jitter: 0.5,
        };
        let waits: Vec<u128> = (1..=5).map(|n| p.base_delay(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.delay(2, 0.0).as_millis(), 200);
        assert_eq!(p.delay(2, 0.999_999).as_millis(), 100);
    }
}
