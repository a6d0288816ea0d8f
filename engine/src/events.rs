//! [`RunEvent`]: what an executing run reports to whoever watches (the CLI's progress UI).

use crate::model::RunStatus;
use std::time::Duration;
use tokio::sync::mpsc;

/// One thing that happened while a run executed.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// The executor took the run; `done` steps were already complete.
    Started {
        /// The run.
        run_id: String,
        /// Steps in the plan.
        total: usize,
        /// Steps complete before this execution began.
        done: usize,
    },
    /// An attempt began.
    StepStarted {
        /// The step.
        step: String,
        /// What it acts on ([`crate::StepSpec::subject()`]).
        subject: Option<String>,
        /// The attempt number.
        attempt: i64,
    },
    /// An attempt succeeded.
    StepSucceeded {
        /// The step.
        step: String,
        /// What it acts on ([`crate::StepSpec::subject()`]).
        subject: Option<String>,
        /// The attempt number.
        attempt: i64,
        /// How long the attempt took.
        elapsed: Duration,
        /// What the step returned (`null` when nobody observes the run).
        output: serde_json::Value,
    },
    /// An attempt failed; `retry_in` is set when another attempt will follow.
    StepFailed {
        /// The step.
        step: String,
        /// What it acts on ([`crate::StepSpec::subject()`]).
        subject: Option<String>,
        /// The attempt number.
        attempt: i64,
        /// The error.
        error: String,
        /// The wait before the next attempt, if any.
        retry_in: Option<Duration>,
    },
    /// The run reached a final status.
    Finished {
        /// The final status.
        status: RunStatus,
        /// Why it failed, if it did.
        error: Option<String>,
    },
}

/// Where an execution sends its [`RunEvent`]s; sending never blocks and a closed receiver is ignored.
#[derive(Clone, Debug, Default)]
pub struct Observer(Vec<mpsc::UnboundedSender<RunEvent>>);

impl Observer {
    /// An observer that discards events.
    pub fn none() -> Self {
        Observer(Vec::new())
    }

    /// An observer and the receiving end of its channel.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<RunEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Observer(vec![tx]), rx)
    }

    /// One observer that sends every event to both.
    pub fn merge(mut self, other: Observer) -> Self {
        self.0.extend(other.0);
        self
    }

    /// Whether anyone listens (events that cost a copy are built only then).
    pub(crate) fn is_active(&self) -> bool {
        !self.0.is_empty()
    }

    pub(crate) fn emit(&self, event: RunEvent) {
        if let Some((last, rest)) = self.0.split_last() {
            for tx in rest {
                let _ = tx.send(event.clone());
            }
            let _ = last.send(event);
        }
    }
}

/// Watches every execution of an [`crate::Engine`]: given the run, returns
/// where that execution's events go (an exporter of traces, for example).
pub type Watcher = std::sync::Arc<dyn Fn(&crate::RunRecord) -> Observer + Send + Sync>;
