//! What a step sees ([`StepContext`]) and how it fails ([`StepError`]).

use crate::model::{LogLine, now_millis};
use crate::typed::{Step, decode};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Whether a failed attempt is worth repeating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retried with backoff up to the step's maximum attempts.
    Retryable,
    /// Final: the step fails now.
    Permanent,
}

/// The error a step returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    /// Retryable or permanent.
    pub class: ErrorClass,
    /// What went wrong, for users; persisted with the attempt.
    pub message: String,
}

impl StepError {
    /// A transient failure (network blip, 5xx, rate limit).
    pub fn retryable(message: impl fmt::Display) -> Self {
        StepError {
            class: ErrorClass::Retryable,
            message: message.to_string(),
        }
    }

    /// A failure that retrying cannot fix (bad config, 4xx, syntax error).
    pub fn permanent(message: impl fmt::Display) -> Self {
        StepError {
            class: ErrorClass::Permanent,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {}

impl From<serde_json::Error> for StepError {
    fn from(e: serde_json::Error) -> Self {
        StepError::permanent(format!("bad data: {e}"))
    }
}

/// Collects an attempt's log lines; the executor persists them with its next write.
#[derive(Clone)]
pub struct StepLogger {
    step: String,
    attempt: i64,
    seq: Arc<AtomicI64>,
    sink: Arc<Mutex<Vec<LogLine>>>,
}

impl StepLogger {
    pub(crate) fn new(step: String, attempt: i64, sink: Arc<Mutex<Vec<LogLine>>>) -> Self {
        StepLogger {
            step,
            attempt,
            seq: Arc::new(AtomicI64::new(0)),
            sink,
        }
    }

    fn push(&self, level: &str, line: String) {
        tracing::event!(
            target: "nix_infra::step",
            tracing::Level::INFO,
            step = %self.step,
            attempt = self.attempt,
            level,
            "{line}"
        );
        let entry = LogLine {
            step: self.step.clone(),
            attempt: self.attempt,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at: now_millis(),
            level: level.to_string(),
            line,
        };
        self.sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entry);
    }

    /// Records an informational line.
    pub fn info(&self, line: impl fmt::Display) {
        self.push("info", line.to_string());
    }

    /// Records a warning.
    pub fn warn(&self, line: impl fmt::Display) {
        self.push("warn", line.to_string());
    }

    /// Records an error line (the attempt's error itself is stored separately).
    pub fn error(&self, line: impl fmt::Display) {
        self.push("error", line.to_string());
    }
}

/// Everything one attempt of a step receives.
#[derive(Clone)]
pub struct StepContext {
    /// The run.
    pub run_id: String,
    /// The step's name in the plan.
    pub step: String,
    /// The attempt number, 1-based, rising across resumes.
    pub attempt: i64,
    /// `run_id/step`: the same for every attempt, for deduplicating outside effects.
    pub idempotency_key: String,
    /// The run input.
    pub input: Arc<serde_json::Value>,
    /// The step's parameters from the plan.
    pub params: serde_json::Value,
    /// What the step acts on (a node), as [`crate::StepSpec::subject()`] says.
    pub subject: Option<String>,
    /// Outputs of the steps this one depends on, by step name.
    pub deps: BTreeMap<String, serde_json::Value>,
    /// The kind of each dependency, by step name.
    pub dep_kinds: BTreeMap<String, String>,
    /// Fires when the run is cancelled or the lease is lost; stop soon after.
    pub cancel: CancellationToken,
    /// Lines persisted with this attempt.
    pub log: StepLogger,
}

impl StepContext {
    /// Decodes the run input.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        decode(&self.input, format!("the input of step `{}`", self.step))
    }

    /// Decodes the step parameters.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        decode(&self.params, format!("step `{}`'s params", self.step))
    }

    /// Decodes the output of dependency `step` as any type (untyped steps;
    /// typed ones read [`StepContext::output`]).
    pub fn dep<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        decode(self.dep_value(step)?, format!("step `{step}`'s output"))
    }

    /// The output of dependency `step`, a step of kind `S`, as `S::Output`.
    ///
    /// Fails for good, naming both steps, if `step` is not a dependency or is
    /// of another kind; and naming `step` and the field if its stored output
    /// does not fit `S::Output` (``step `overlay/w1`'s output: missing field
    /// `overlay_ip` ``). A step never reads a default in place of a field.
    pub fn output<S: Step>(&self, step: &str) -> Result<S::Output, StepError> {
        let value = self.dep_value(step)?;
        match self.dep_kinds.get(step) {
            Some(kind) if kind != S::KIND => Err(StepError::permanent(format!(
                "step `{}` reads `{step}` as a `{}` step, but it is a `{kind}` step",
                self.step,
                S::KIND
            ))),
            _ => decode(value, format!("step `{step}`'s output")),
        }
    }

    /// The outputs of every dependency of kind `S`, by step name.
    pub fn outputs<S: Step>(&self) -> Result<Vec<(&str, S::Output)>, StepError> {
        self.dep_kinds
            .iter()
            .filter(|(_, kind)| kind.as_str() == S::KIND)
            .map(|(name, _)| Ok((name.as_str(), self.output::<S>(name)?)))
            .collect()
    }

    fn dep_value(&self, step: &str) -> Result<&serde_json::Value, StepError> {
        self.deps.get(step).ok_or_else(|| {
            StepError::permanent(format!("step `{}` has no dependency `{step}`", self.step))
        })
    }
}
