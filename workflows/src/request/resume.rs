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

/// Removes a finished run's own secret (`env.<run id>`, which `cmd` and
/// `action` with `--env-vars` store before the run exists), if its input
/// names one and the run succeeded: a run resumed to success no longer
/// needs it. Anything else is left as it is.
pub fn forget_run_secret(origin: &super::Origin, state: &RunState) {
    if state.run.status != engine::RunStatus::Succeeded {
        return;
    }
    let Some(name) = state.run.input["args"]["env_secret"].as_str() else {
        return;
    };
    let removed = origin
        .cluster()
        .and_then(|c| c.secrets())
        .map_err(|e| e.to_string())
        .and_then(|store| match store.remove(name) {
            Ok(()) | Err(tasks::secrets::SecretError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
    if let Err(e) = removed {
        tracing::warn!(secret = %name, "cannot remove the run's secret: {e}");
    }
}
