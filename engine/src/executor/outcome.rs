//! What an attempt's end means for the run: done, waiting for a retry, failed
//! for good or cancelled; and, once nothing is left to run, the run's status.

use super::{Execution, Msg, Phase};
use crate::attempt::Outcome;
use crate::events::RunEvent;
use crate::model::{AttemptStatus, RunStatus, now_millis};
use crate::step::ErrorClass;
use crate::store::AttemptEnd;
use std::time::Duration;

impl Execution {
    /// Folds an attempt's outcome into the state; returns the record to persist
    /// and the event to announce once it is durable.
    pub(super) fn on_ended(
        &mut self,
        step: String,
        attempt: i64,
        outcome: Outcome,
        elapsed: Duration,
    ) -> (AttemptEnd, Option<RunEvent>) {
        self.running -= 1;
        let spec = self.plan.step(&step).expect("planned step");
        let (status, output, error, retryable) = match outcome {
            Outcome::Ok(v) => {
                self.phase.insert(step.clone(), Phase::Done);
                self.errors.remove(&step);
                self.outputs.insert(step.clone(), v.clone());
                let event = RunEvent::StepSucceeded {
                    step: step.clone(),
                    subject: spec.subject().map(str::to_string),
                    attempt,
                    elapsed,
                    // Copied only for someone to read it: not on the unobserved hot path.
                    output: if self.observer.is_active() {
                        v.clone()
                    } else {
                        serde_json::Value::Null
                    },
                };
                let end = AttemptEnd {
                    step,
                    number: attempt,
                    status: AttemptStatus::Succeeded,
                    output: Some(v),
                    error: None,
                    retry_at: None,
                };
                return (end, Some(event));
            }
            Outcome::Cancelled => (
                AttemptStatus::Cancelled,
                None,
                "cancelled".to_string(),
                false,
            ),
            Outcome::TimedOut(limit) => (
                AttemptStatus::TimedOut,
                None,
                format!("timed out after {limit:?}"),
                true,
            ),
            Outcome::Err(e) => (
                AttemptStatus::Failed,
                None,
                e.message,
                e.class == ErrorClass::Retryable,
            ),
        };
        let used = self.used.get(&step).copied().unwrap_or(0);
        let retry = retryable && !self.cancelling && used < spec.retry.max_attempts;
        let retry_in = retry.then(|| spec.retry.delay(used, rand::random::<f64>()));
        let mut event = None;
        if status == AttemptStatus::Cancelled {
            self.phase.insert(step.clone(), Phase::Cancelled);
        } else {
            event = Some(RunEvent::StepFailed {
                step: step.clone(),
                subject: spec.subject().map(str::to_string),
                attempt,
                error: error.clone(),
                retry_in,
            });
            if let Some(wait) = retry_in {
                self.phase.insert(step.clone(), Phase::WaitingRetry);
                self.waiting += 1;
                let tx = self.tx.clone();
                let due = step.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Msg::RetryDue(due));
                });
            } else {
                self.phase.insert(step.clone(), Phase::Failed);
                let attempts = if used == 1 {
                    "1 attempt".to_string()
                } else {
                    format!("{used} attempts")
                };
                self.errors
                    .insert(step.clone(), format!("{error} (after {attempts})"));
            }
        }
        let end = AttemptEnd {
            step,
            number: attempt,
            status,
            output,
            error: Some(error),
            retry_at: retry_in.map(|w| now_millis() + w.as_millis() as i64),
        };
        (end, event)
    }

    pub(super) fn final_status(&self) -> (RunStatus, Option<String>) {
        if self.phase.values().all(|p| *p == Phase::Done) {
            return (RunStatus::Succeeded, None);
        }
        if self.suspending {
            // Handed back: pending, unleased, for the next executor to continue.
            return (RunStatus::Pending, None);
        }
        if self.cancelling {
            return (RunStatus::Cancelled, Some("cancelled".into()));
        }
        let failed: Vec<String> = self
            .errors
            .iter()
            .map(|(step, e)| format!("step `{step}` failed: {e}"))
            .collect();
        let blocked = self.count(Phase::Pending);
        let mut msg = failed.join("; ");
        if blocked > 0 {
            msg.push_str(&format!("; {blocked} dependent step(s) not run"));
        }
        (RunStatus::Failed, Some(msg))
    }
}
