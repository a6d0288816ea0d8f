//! A run's three views on its page: the **grid** (one row per node, one
//! column per stage, for runs whose steps act on nodes), the **timeline**
//! (every attempt as a bar on a time axis, retries and their backoff
//! visible, the critical path marked) and the **DAG** (lanes per subject,
//! for the rest).
//!
//! All three read [`StepView`]s, the same attempts the trace is built from,
//! so the dashboard and an OTLP backend show the same times.

use crate::dashboard::esc;
use engine::Millis;
use engine::inspect::{STATUS_COLOURS, StepView};
use std::collections::HashMap;

fn colours(status: &str) -> (&'static str, &'static str) {
    let status = match status {
        "timed_out" | "abandoned" => "failed",
        "copied" => "succeeded",
        s => s,
    };
    STATUS_COLOURS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, f, s)| (*f, *s))
        .unwrap_or(("#fff", "#999"))
}

/// A step's stage: its name without its `/<subject>`.
pub fn stage(v: &StepView) -> &str {
    match &v.subject {
        Some(s) => v
            .name
            .strip_suffix(s.as_str())
            .and_then(|n| n.strip_suffix('/'))
            .unwrap_or(&v.name),
        None => &v.name,
    }
}

/// What hovering a step shows: each attempt, how long it took, its error.
fn attempts_title(v: &StepView) -> String {
    let mut t = format!("{}: {}", v.name, v.status);
    for a in &v.attempts {
        let took = a
            .finished_at
            .map(|f| format!(" {} ms", f - a.started_at))
            .unwrap_or_default();
        let err = a
            .error
            .as_deref()
            .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
            .unwrap_or_default();
        t.push_str(&format!("\n#{} {}{took}{err}", a.number, a.status));
    }
    t
}

/// The grid: a row per subject (node), a column per stage, each cell the
/// step's status linking to its attempts and log; steps without a subject
/// in a row of their own above. `None` when no step has a subject.
pub fn grid_html(run_id: &str, views: &[StepView]) -> Option<String> {
    let mut nodes: Vec<&str> = Vec::new();
    let mut stages: Vec<&str> = Vec::new();
    let mut cell: HashMap<(&str, &str), &StepView> = HashMap::new();
    for v in views {
        let Some(node) = v.subject.as_deref() else {
            continue;
        };
        if !nodes.contains(&node) {
            nodes.push(node);
        }
        let s = stage(v);
        if !stages.contains(&s) {
            stages.push(s);
        }
        cell.insert((node, s), v);
    }
    if nodes.is_empty() {
        return None;
    }
    let link = |v: &StepView, text: &str| {
        let (fill, stroke) = colours(v.status.as_str());
        format!(
            "<td class=cell data-step=\"{n}\" data-status={s} style=\"background:{fill};border:1px solid {stroke}\" title=\"{t}\">\
             <a href=\"/runs/{r}?step={q}#step-{n}\">{text}</a></td>",
            n = esc(&v.name),
            q = query_value(&v.name),
            s = v.status,
            t = esc(&attempts_title(v)),
            r = query_value(run_id),
        )
    };
    let shared: Vec<String> = views
        .iter()
        .filter(|v| v.subject.is_none())
        .map(|v| link(v, &esc(&v.name)))
        .collect();
    let mut html = String::from("<div class=gridwrap><table id=grid>");
    if !shared.is_empty() {
        html.push_str(&format!(
            "<tr class=shared><th>run</th>{}</tr>",
            shared.join("")
        ));
    }
    html.push_str("<tr><th>node</th>");
    for s in &stages {
        html.push_str(&format!("<th>{}</th>", esc(s)));
    }
    html.push_str("</tr>");
    for n in &nodes {
        html.push_str(&format!("<tr data-node=\"{}\"><th>{}</th>", esc(n), esc(n)));
        for s in &stages {
            match cell.get(&(*n, *s)) {
                Some(v) => html.push_str(&link(v, &glyph(v))),
                None => html.push_str("<td class=none></td>"),
            }
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></div>");
    Some(html)
}

/// `s` for a URL (`?step=` and a path segment): letters, digits and `/-_.~` as they are, the rest percent-encoded.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A cell's text: the attempts it took, when more than one.
fn glyph(v: &StepView) -> String {
    match v.attempts.len() {
        0 | 1 => "&nbsp;".into(),
        k => format!("×{k}"),
    }
}

/// The steps on the critical path: from the step that ended last, back
/// through the dependency that ended last, to the start.
pub fn critical_path(views: &[StepView]) -> Vec<String> {
    let end = |v: &StepView| v.attempts.iter().filter_map(|a| a.finished_at).max();
    let by_name: HashMap<&str, &StepView> = views.iter().map(|v| (v.name.as_str(), v)).collect();
    let mut path = Vec::new();
    let mut at = views
        .iter()
        .filter(|v| end(v).is_some())
        .max_by_key(|v| end(v));
    while let Some(v) = at {
        path.push(v.name.clone());
        at = v
            .deps
            .iter()
            .filter_map(|d| by_name.get(d.as_str()).copied())
            .filter(|d| end(d).is_some())
            .max_by_key(|d| end(d));
    }
    path.reverse();
    path
}

/// The timeline: a row per step that ran, a bar per attempt on a shared
/// time axis, the wait before a retry as a dashed line, the critical path
/// in bold, the run's duration at the top.
pub fn timeline_svg(views: &[StepView], now: Millis) -> String {
    let ran: Vec<&StepView> = views.iter().filter(|v| !v.attempts.is_empty()).collect();
    let t0 = ran
        .iter()
        .flat_map(|v| &v.attempts)
        .map(|a| a.started_at)
        .min()
        .unwrap_or(now);
    let t1 = ran
        .iter()
        .flat_map(|v| &v.attempts)
        .map(|a| a.finished_at.unwrap_or(now))
        .max()
        .unwrap_or(now)
        .max(t0 + 1);
    let (label, span, row, top) = (200.0, 900.0, 18.0, 34.0);
    let x = |t: Millis| label + (t - t0) as f64 * span / (t1 - t0) as f64;
    let critical = critical_path(views);
    let height = top + ran.len() as f64 * row + 10.0;
    let mut svg = format!(
        "<svg id=timeline xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-size=\"11\">\
         <text x=\"0\" y=\"12\" class=total>total {total}</text>",
        w = label + span + 20.0,
        total = seconds(t1 - t0),
    );
    for k in 0..=4 {
        let t = t0 + (t1 - t0) * k / 4;
        svg.push_str(&format!(
            "<line x1=\"{px}\" y1=\"20\" x2=\"{px}\" y2=\"{height}\" stroke=\"#eceff1\"/>\
             <text x=\"{px}\" y=\"28\" text-anchor=\"middle\" fill=\"#78909c\">{}</text>",
            seconds(t - t0),
            px = x(t)
        ));
    }
    for (k, v) in ran.iter().enumerate() {
        let y = top + k as f64 * row;
        let on_path = critical.contains(&v.name);
        let weight = if on_path { " font-weight=\"bold\"" } else { "" };
        svg.push_str(&format!(
            "<g class=\"row{c}\" data-step=\"{n}\"><text x=\"0\" y=\"{ty}\"{weight}>{n}</text>",
            c = if on_path { " critical" } else { "" },
            n = esc(&v.name),
            ty = y + 12.0,
        ));
        for (j, a) in v.attempts.iter().enumerate() {
            let end = a.finished_at.unwrap_or(now);
            let (fill, stroke) = colours(a.status.as_str());
            let width = (x(end) - x(a.started_at)).max(2.0);
            svg.push_str(&format!(
                "<rect class=attempt data-attempt=\"{num}\" data-status={st} x=\"{bx}\" y=\"{by}\" width=\"{width}\" height=\"12\" \
                 fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{sw}\"><title>{n} #{num} {st}: {ms} ms</title></rect>",
                num = a.number,
                st = a.status,
                bx = x(a.started_at),
                by = y + 2.0,
                sw = if on_path { 2 } else { 1 },
                n = esc(&v.name),
                ms = end - a.started_at,
            ));
            if let Some(next) = v.attempts.get(j + 1) {
                svg.push_str(&format!(
                    "<line class=backoff x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"#f9a825\" stroke-dasharray=\"3,3\"/>",
                    x(end),
                    x(next.started_at),
                    ly = y + 8.0
                ));
            }
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

fn seconds(ms: Millis) -> String {
    if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{AttemptRecord, AttemptStatus, StepStatus};

    fn attempt(
        step: &str,
        number: i64,
        status: AttemptStatus,
        from: Millis,
        to: Millis,
    ) -> AttemptRecord {
        AttemptRecord {
            step: step.into(),
            number,
            status,
            started_at: from,
            finished_at: Some(to),
            output: None,
            error: (status == AttemptStatus::Failed).then(|| "boom".into()),
            retry_at: None,
            copied_from: None,
        }
    }

    fn view(
        name: &str,
        subject: Option<&str>,
        deps: &[&str],
        attempts: Vec<AttemptRecord>,
    ) -> StepView {
        let status = match attempts.last().map(|a| a.status) {
            Some(AttemptStatus::Succeeded) => StepStatus::Succeeded,
            Some(_) => StepStatus::Failed,
            None => StepStatus::Pending,
        };
        StepView {
            name: name.into(),
            kind: name.split('/').next().unwrap().into(),
            subject: subject.map(String::from),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            status,
            attempts,
        }
    }

    /// `locate`, then `install/<n>` → `init/<n>` on `nodes` nodes; install on n2 retried once.
    fn node_run(nodes: usize) -> Vec<StepView> {
        let ok = AttemptStatus::Succeeded;
        let mut v = vec![view(
            "locate",
            None,
            &[],
            vec![attempt("locate", 1, ok, 0, 100)],
        )];
        for k in 1..=nodes {
            let n = format!("n{k}");
            let install = format!("install/{n}");
            let mut tries = vec![];
            if k == 2 {
                tries.push(attempt(&install, 1, AttemptStatus::Failed, 100, 300));
                tries.push(attempt(&install, 2, ok, 800, 1000));
            } else {
                tries.push(attempt(&install, 1, ok, 100, 400));
            }
            v.push(view(&install, Some(&n), &["locate"], tries));
            let init = format!("init/{n}");
            let (from, to) = if k == 2 { (1000, 1500) } else { (400, 600) };
            v.push(view(
                &init,
                Some(&n),
                &[install.as_str()],
                vec![attempt(&init, 1, ok, from, to)],
            ));
        }
        v
    }

    #[test]
    fn the_grid_has_a_row_per_node_and_a_column_per_stage() {
        let html = grid_html("r1", &node_run(20)).unwrap();
        assert_eq!(html.matches("<tr data-node=").count(), 20);
        assert_eq!(
            html.matches("<td class=cell").count(),
            41,
            "40 node cells and locate"
        );
        assert!(html.contains("<th>install</th><th>init</th>"), "{html}");
        let retried = html.split("data-step=\"install/n2\"").nth(1).unwrap();
        assert!(retried.contains("×2</a>"), "{retried}");
        assert!(html.contains("href=\"/runs/r1?step=install/n2#step-install/n2\""));
        let cell = html.split("data-step=\"install/n2\"").nth(1).unwrap();
        assert!(cell.contains("#1 failed 200 ms: boom") && cell.contains("#2 succeeded 200 ms"));
        assert!(grid_html("r2", &[view("step-1", None, &[], vec![])]).is_none());
    }

    #[test]
    fn the_timeline_draws_each_attempt_the_backoff_and_the_critical_path() {
        let views = node_run(3);
        let svg = timeline_svg(&views, 5_000);
        assert_eq!(
            svg.matches("class=attempt ").count(),
            8,
            "7 steps, one retried"
        );
        let row = svg
            .split("data-step=\"install/n2\"")
            .nth(1)
            .unwrap()
            .split("</g>")
            .next()
            .unwrap();
        assert_eq!(row.matches("class=attempt ").count(), 2);
        assert_eq!(row.matches("class=backoff").count(), 1);
        assert!(row.contains("data-status=failed") && row.contains("data-status=succeeded"));
        assert_eq!(critical_path(&views), ["locate", "install/n2", "init/n2"]);
        assert!(svg.contains("<g class=\"row critical\" data-step=\"init/n2\">"));
        assert!(svg.contains("total 1.50 s"), "{svg}");
    }

    #[test]
    fn the_dag_puts_each_node_in_its_own_lane() {
        let svg = crate::dashboard::dag_svg(&node_run(20));
        let size = |attr: &str| -> f64 {
            let s = svg.split(&format!("{attr}=\"")).nth(1).unwrap();
            s.split('"').next().unwrap().parse().unwrap()
        };
        // Three columns (locate, install, init) whatever the number of nodes; a lane per node and one shared.
        assert_eq!(size("width"), 20.0 + 3.0 * 230.0);
        assert_eq!(size("height"), 20.0 + 21.0 * 54.0);
    }
}
