//! What a step sees ([`StepContext`]) and how it fails ([`StepError`]).

use crate::model::{LogLine, now_millis};
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
        tracing::event!(target: "nix_infra::step", tracing::Level::INFO, step = %self.step, attempt = self.attempt, level, "{line}");
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
    /// Outputs of the steps this one depends on, by step name.
    pub deps: BTreeMap<String, serde_json::Value>,
    /// Fires when the run is cancelled or the lease is lost; stop soon after.
    pub cancel: CancellationToken,
    /// Lines persisted with this attempt.
    pub log: StepLogger,
}

impl StepContext {
    /// Decodes the run input.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        Ok(T::deserialize(&*self.input)?)
    }

    /// Decodes the step parameters.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        Ok(T::deserialize(&self.params)?)
    }

    /// Decodes the output of dependency `step`.
    pub fn dep<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let value = self.deps.get(step).ok_or_else(|| {
            StepError::permanent(format!("step `{}` has no dependency `{step}`", self.step))
        })?;
        Ok(T::deserialize(value)?)
    }
}
