//! Progress on stderr while a run executes: a live bar on a terminal, plain lines otherwise.
//!
//! Like colmena's job monitor, the engine only emits [`RunEvent`]s; this
//! module is the one place that turns them into something a person reads.

use engine::{RunEvent, RunStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Consumes a run's events until the channel closes.
pub async fn report(mut events: UnboundedReceiver<RunEvent>) {
    let live = std::io::stderr().is_terminal();
    let bar = if live {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps  {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => eprintln!("{line}"),
    };
    let mut running: Vec<String> = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            RunEvent::Started {
                run_id,
                total,
                done,
            } => {
                if let Some(b) = &bar {
                    b.set_length(total as u64);
                    b.set_position(done as u64);
                }
                let resumed = if done > 0 {
                    format!(", {done} already done")
                } else {
                    String::new()
                };
                say(format!("run {run_id}: {total} steps{resumed}"));
            }
            RunEvent::StepStarted { step, attempt } => {
                if bar.is_none() && attempt > 1 {
                    say(format!("  ↻ {step} attempt {attempt}"));
                }
                running.push(step);
            }
            RunEvent::StepSucceeded {
                step,
                attempt,
                elapsed,
            } => {
                running.retain(|s| s != &step);
                if let Some(b) = &bar {
                    b.inc(1);
                }
                let tries = if attempt > 1 {
                    format!(", attempt {attempt}")
                } else {
                    String::new()
                };
                say(format!("  ✓ {step} ({}{tries})", human(elapsed)));
            }
            RunEvent::StepFailed {
                step,
                attempt,
                error,
                retry_in,
            } => {
                running.retain(|s| s != &step);
                match retry_in {
                    Some(wait) => say(format!(
                        "  ! {step} attempt {attempt} failed, retrying in {}: {error}",
                        human(wait)
                    )),
                    None => say(format!("  ✗ {step} attempt {attempt} failed: {error}")),
                }
            }
            RunEvent::Finished { status, .. } => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                let mark = if status == RunStatus::Succeeded {
                    "✓"
                } else {
                    "✗"
                };
                say(format!("{mark} run {status}"));
            }
        }
        if let Some(b) = &bar {
            b.set_message(summarise(&running));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

fn summarise(running: &[String]) -> String {
    match running.len() {
        0 => String::new(),
        1..=3 => format!("running {}", running.join(", ")),
        n => format!("running {}, … ({n} in flight)", running[..2].join(", ")),
    }
}

/// A short human duration: `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms / 1_000) % 60)
    }
}
