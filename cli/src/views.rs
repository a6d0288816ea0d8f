//! What `runs show|list|logs` print: the JSON shapes scripts rely on, and the text tables.

use crate::progress::human;
use engine::inspect::StepView;
use engine::{LogLine, RunRecord, RunState};
use std::time::Duration;
pub use workflows::report::{duration_ms, log_json, run_detail, run_summary, timestamp};

/// The status as people read it: a `running` run whose executor is gone is `abandoned`.
fn status_text(r: &RunRecord) -> &'static str {
    if r.is_abandoned(engine::now_millis()) {
        "abandoned"
    } else {
        r.status.as_str()
    }
}

/// `runs show` as text: a header and one line per step.
pub fn run_text(state: &RunState, steps: &[StepView]) -> String {
    let r = &state.run;
    let mut out = format!(
        "run       {}\nworkflow  {} v{}\nstatus    {}\ncreated   {}\n",
        r.id,
        r.workflow,
        r.version,
        status_text(r),
        timestamp(r.created_at)
    );
    if let Some(f) = r.finished_at {
        out.push_str(&format!("finished  {}\n", timestamp(f)));
    }
    if let Some((run, step)) = &r.forked_from {
        out.push_str(&format!("forked    from {run} at step {step}\n"));
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("error     {e}\n"));
    }
    let width = steps.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    out.push_str(&format!(
        "\n{:<width$}  {:<10}  {:>8}  {:>10}  LAST ERROR\n",
        "STEP", "STATUS", "ATTEMPTS", "TIME"
    ));
    for s in steps {
        let time: i64 = s.attempts.iter().filter_map(duration_ms).sum();
        let time = if s.attempts.is_empty() {
            "-".to_string()
        } else {
            human(Duration::from_millis(time.max(0) as u64))
        };
        let copied = s.attempts.iter().any(|a| a.copied_from.is_some());
        let attempts = if copied {
            "copied".to_string()
        } else {
            s.attempts.len().to_string()
        };
        // A step that got through shows no error; its attempts keep theirs (--output json).
        let error = if s.status == engine::StepStatus::Succeeded {
            String::new()
        } else {
            s.attempts
                .iter()
                .rev()
                .find_map(|a| a.error.clone())
                .unwrap_or_default()
        };
        out.push_str(&format!(
            "{:<width$}  {:<10}  {:>8}  {:>10}  {}\n",
            s.name,
            s.status.as_str(),
            attempts,
            time,
            error
        ));
    }
    out
}

/// `runs list` as text.
pub fn list_text(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let width = runs.iter().map(|r| r.id.len()).max().unwrap_or(2);
    let mut out = format!(
        "{:<width$}  {:<16}  {:<10}  CREATED\n",
        "ID", "WORKFLOW", "STATUS"
    );
    for r in runs {
        out.push_str(&format!(
            "{:<width$}  {:<16}  {:<10}  {}\n",
            r.id,
            r.workflow,
            status_text(r),
            timestamp(r.created_at)
        ));
    }
    out
}

/// One log line as text.
pub fn log_text(l: &LogLine) -> String {
    format!(
        "{} {}#{} {:<5} {}",
        timestamp(l.at),
        l.step,
        l.attempt,
        l.level,
        l.line
    )
}
