//! What resuming a run would run again that may already have run.

use engine::{AttemptStatus, RunState};

/// The steps whose last attempt failed because the connection was lost
/// while their command ran (`cmd`, `action`): resuming runs them again, so
/// the user is asked first.
pub fn uncertain_steps(state: &RunState) -> Vec<String> {
    state
        .run
        .plan
        .steps
        .iter()
        .filter(|spec| {
            state
                .attempts
                .iter()
                .filter(|a| a.step == spec.name)
                .max_by_key(|a| a.number)
                .is_some_and(|a| {
                    a.status == AttemptStatus::Failed
                        && a.error
                            .as_deref()
                            .is_some_and(|e| e.contains(crate::node::MAY_HAVE_RUN))
                })
        })
        .map(|spec| spec.name.clone())
        .collect()
}

/// What to say of `steps` of run `run_id` that may have run already.
pub fn may_have_run(run_id: &str, steps: &[String]) -> String {
    format!(
        "run {run_id}: {} may have run already (the connection was lost while the command ran)",
        steps.join(", ")
    )
}
