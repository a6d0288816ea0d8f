//! Progress on stderr while a run executes: on a terminal a live bar plus one
//! line per node (its current step), otherwise plain lines, one per step event.
//!
//! Like colmena's job monitor, the engine only emits [`RunEvent`]s; this
//! module is the one place that turns them into something a person reads.

use engine::{RunEvent, RunStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Consumes a run's events until the channel closes.
pub async fn report(mut events: UnboundedReceiver<RunEvent>) {
    let live = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let mut nodes = NodeLines::default();
    let bar = if live {
        let bar = multi.add(ProgressBar::new(0));
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
        Some(_) => {
            let _ = multi.println(line);
        }
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
            RunEvent::StepStarted {
                step,
                subject,
                attempt,
            } => {
                if bar.is_none() && attempt > 1 {
                    say(format!("  ↻ {step} attempt {attempt}"));
                }
                if live {
                    nodes.show(&multi, (&step, subject.as_deref()), "…");
                }
                running.push(step);
            }
            RunEvent::StepSucceeded {
                step,
                subject,
                attempt,
                elapsed,
                ..
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
                if live {
                    nodes.show(&multi, (&step, subject.as_deref()), "✓");
                }
                say(format!("  ✓ {step} ({}{tries})", human(elapsed)));
            }
            RunEvent::StepFailed {
                step,
                subject,
                attempt,
                error,
                retry_in,
            } => {
                running.retain(|s| s != &step);
                if live {
                    let mark = if retry_in.is_some() {
                        "retrying"
                    } else {
                        "✗ failed"
                    };
                    nodes.show(&multi, (&step, subject.as_deref()), mark);
                }
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
                nodes.finish();
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

/// One live line per node of a node lifecycle run (steps whose subject is a node).
#[derive(Default)]
struct NodeLines {
    lines: BTreeMap<String, ProgressBar>,
}

impl NodeLines {
    fn show(&mut self, multi: &MultiProgress, (step, node): (&str, Option<&str>), state: &str) {
        let Some(node) = node else {
            return;
        };
        // The stage: the name without its `/<node>` (all of it if it has none).
        let stage = step.strip_suffix(&format!("/{node}")).unwrap_or(step);
        let line = self.lines.entry(node.to_string()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:<14} {msg}")
                    .expect("static template"),
            );
            b.set_prefix(node.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        line.set_message(format!("{stage} {state}"));
    }

    fn finish(&mut self) {
        for b in self.lines.values() {
            b.finish_and_clear();
        }
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
