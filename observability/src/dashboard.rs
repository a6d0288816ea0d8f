//! The web dashboard's pages, rendered on the server as plain HTML and SVG
//! (no build chain): runs, one run (its grid or DAG, its timeline:
//! [`crate::run_views`]), schedules, the cluster ([`crate::mesh`]).
//!
//! Pages that can change name an event stream (`data-events`); the one
//! script, `/assets/live.js`, fetches the page again when the stream says
//! it changed and swaps its `<main>`. Without scripts, a `<meta>` refresh.

use engine::inspect::{STATUS_COLOURS, StepView, step_views};
use engine::{LogLine, RunRecord, RunState, Schedule};
use std::collections::HashMap;

pub use crate::mesh::{ClusterApp, ClusterNode, ClusterView, cluster_page};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(crate) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A page. With `events` (an event stream URL) it loads `/assets/live.js`,
/// which swaps `<main>` in place when the stream says the page changed;
/// `refresh` then only reloads browsers without scripts (`<noscript>`).
/// Without `events`, `refresh` reloads it every so many seconds.
pub(crate) fn page(
    title: &str,
    nav: &str,
    refresh: Option<u32>,
    events: Option<&str>,
    body: &str,
) -> String {
    let link = |href: &str, name: &str| {
        let class = if name == nav { " class=current" } else { "" };
        format!("<a href=\"{href}\"{class}>{name}</a>")
    };
    let meta = refresh
        .map(|s| format!("<meta http-equiv=refresh content={s}>"))
        .unwrap_or_default();
    let (head, body_attr) = match events {
        Some(url) => (
            format!("<noscript>{meta}</noscript><script src=\"/assets/live.js\" defer></script>"),
            format!(" data-events=\"{}\"", esc(url)),
        ),
        None => (meta, String::new()),
    };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t} · nix-infra</title>\
         <meta name=viewport content=\"width=device-width\">{head}<style>{CSS}</style></head><body{body_attr}>\
         <header><b>nix-infra</b> {} {} {}</header><main><h1>{t}</h1>{body}</main></body></html>",
        link("/", "Runs"),
        link("/schedules", "Schedules"),
        link("/cluster", "Cluster"),
        t = esc(title)
    )
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#222}header{background:#263238;color:#fff;padding:10px 16px}\
header a{color:#cfd8dc;margin-left:16px;text-decoration:none}header a.current{color:#fff;font-weight:bold}\
main{padding:8px 16px}table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
.status{padding:1px 6px;border-radius:3px;border:1px solid}.orphan{background:#fff3e0}.bad{color:#c62828}\
pre{background:#f5f5f5;padding:8px;max-height:360px;overflow:auto}form{margin:8px 0}\
.gridwrap{overflow:auto;max-width:100%}#grid td.cell{min-width:18px;height:18px;padding:0;text-align:center;font-size:11px}\
#grid td.cell a{display:block;color:#333;text-decoration:none}#grid th{font-weight:normal;font-size:12px;padding:2px 6px;white-space:nowrap}\
#grid td.none{background:#fafafa}tr:target{outline:2px solid #1565c0}#timeline text.total{font-weight:bold}";

pub(crate) fn badge(status: &str) -> String {
    let (fill, stroke) = STATUS_COLOURS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, f, s)| (*f, *s))
        .unwrap_or(("#fff", "#999"));
    format!(
        "<span class=status data-status={s} style=\"background:{fill};border-color:{stroke}\">{s}</span>",
        s = esc(status)
    )
}

/// Filters of the runs page.
#[derive(Clone, Debug, Default)]
pub struct RunsFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this status.
    pub status: Option<String>,
}

/// The runs page: a filterable list that refreshes itself.
pub fn runs_page(runs: &[RunRecord], filter: &RunsFilter, workflows: &[String]) -> String {
    let options = |all: &[String], chosen: &Option<String>| {
        let mut o = String::from("<option value=\"\">all</option>");
        for w in all {
            let sel = if chosen.as_deref() == Some(w.as_str()) {
                " selected"
            } else {
                ""
            };
            o.push_str(&format!("<option{sel}>{}</option>", esc(w)));
        }
        o
    };
    let statuses: Vec<String> = ["pending", "running", "succeeded", "failed", "cancelled"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rows = String::new();
    for r in runs {
        rows.push_str(&format!(
            "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=bad>{}</td></tr>",
            esc(&r.workflow),
            badge(&r.status.to_string()),
            when(r.created_at),
            esc(r.error.as_deref().unwrap_or("")),
            id = esc(&r.id)
        ));
    }
    let body = format!(
        "<form>workflow <select name=workflow>{}</select> \
         status <select name=status>{}</select> <button>show</button></form>\
         <table id=runs><thead><tr><th>run</th><th>workflow</th><th>status</th><th>created (UTC)</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>",
        options(workflows, &filter.workflow),
        options(&statuses, &filter.status),
    );
    let refresh = if runs.iter().any(|r| !r.status.is_final()) {
        2
    } else {
        10
    };
    page("Runs", "Runs", Some(refresh), Some("/api/events"), &body)
}

/// Steps by column: a step's column is the longest chain of dependencies before it.
fn layers(views: &[StepView]) -> HashMap<String, usize> {
    let mut level: HashMap<String, usize> = HashMap::new();
    for v in views {
        // Plans list dependencies first, so one pass in plan order suffices.
        let l = v
            .deps
            .iter()
            .filter_map(|d| level.get(d))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(v.name.clone(), l);
    }
    level
}

/// The run's DAG as SVG: a box per step, coloured by status, in dependency
/// columns and in lanes by subject (steps without one in the top lane), so
/// a node's steps read along one line however many nodes there are.
pub fn dag_svg(views: &[StepView]) -> String {
    let level = layers(views);
    let (w, h, gx, gy) = (170.0, 40.0, 60.0, 14.0);
    let mut lanes: Vec<Option<&str>> = Vec::new();
    if views.iter().any(|v| v.subject.is_none()) {
        lanes.push(None);
    }
    for v in views {
        if v.subject.is_some() && !lanes.contains(&v.subject.as_deref()) {
            lanes.push(v.subject.as_deref());
        }
    }
    // Rows: each lane as tall as its most crowded column.
    let mut count: HashMap<(usize, usize), usize> = HashMap::new();
    let mut slot: HashMap<&str, (usize, usize, usize)> = HashMap::new();
    for v in views {
        let lane = lanes
            .iter()
            .position(|l| *l == v.subject.as_deref())
            .unwrap_or(0);
        let col = level[&v.name];
        let k = count.entry((lane, col)).or_insert(0);
        slot.insert(v.name.as_str(), (lane, col, *k));
        *k += 1;
    }
    let mut lane_top = vec![0usize; lanes.len() + 1];
    for l in 0..lanes.len() {
        let tallest = count
            .iter()
            .filter(|((ln, _), _)| *ln == l)
            .map(|(_, k)| *k)
            .max()
            .unwrap_or(1);
        lane_top[l + 1] = lane_top[l] + tallest;
    }
    let mut at: HashMap<&str, (f64, f64)> = HashMap::new();
    for (name, (lane, col, k)) in &slot {
        let row = lane_top[*lane] + k;
        at.insert(
            name,
            (10.0 + *col as f64 * (w + gx), 10.0 + row as f64 * (h + gy)),
        );
    }
    let cols = level.values().max().map_or(1, |m| m + 1);
    let width = 20.0 + cols as f64 * (w + gx);
    let height = 20.0 + lane_top[lanes.len()].max(1) as f64 * (h + gy);
    let mut svg = format!(
        "<svg id=dag xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-size=\"12\">"
    );
    for v in views {
        let (x, y) = at[v.name.as_str()];
        for d in &v.deps {
            if let Some((dx, dy)) = at.get(d.as_str()) {
                let (x1, y1, x2, y2) = (dx + w, dy + h / 2.0, x, y + h / 2.0);
                svg.push_str(&format!(
                    "<path d=\"M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}\" fill=\"none\" stroke=\"#90a4ae\"/>",
                    mx = (x1 + x2) / 2.0
                ));
            }
        }
    }
    for v in views {
        let (x, y) = at[v.name.as_str()];
        let status = v.status.to_string();
        let (fill, stroke) = STATUS_COLOURS
            .iter()
            .find(|(s, _, _)| *s == status)
            .map(|(_, f, s)| (*f, *s))
            .unwrap_or(("#fff", "#999"));
        let name = if v.name.chars().count() > 22 {
            format!("{}…", v.name.chars().take(21).collect::<String>())
        } else {
            v.name.clone()
        };
        svg.push_str(&format!(
            "<g class=step data-step=\"{n}\" data-status=\"{status}\"><title>{n}: {status}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"5\" fill=\"{fill}\" stroke=\"{stroke}\"/>\
             <text x=\"{tx}\" y=\"{ty1}\">{name}</text><text x=\"{tx}\" y=\"{ty2}\" fill=\"#555\">{status}</text></g>",
            n = esc(&v.name),
            name = esc(&name),
            tx = x + 8.0,
            ty1 = y + 16.0,
            ty2 = y + 32.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One run: its grid (node runs) or its DAG, its timeline, its steps with
/// attempts and durations, its log (only `step`'s, when one is chosen).
pub fn run_page(state: &RunState, logs: &[LogLine], trace_id: &str, step: Option<&str>) -> String {
    let views = step_views(state);
    let r = &state.run;
    let mut steps = String::new();
    for v in &views {
        let attempts: Vec<String> = v
            .attempts
            .iter()
            .map(|a| {
                let took = a
                    .finished_at
                    .map(|f| format!(" {} ms", f - a.started_at))
                    .unwrap_or_default();
                let err = a
                    .error
                    .as_deref()
                    .map(|e| format!(": {}", esc(e)))
                    .unwrap_or_default();
                format!("#{} {}{took}{err}", a.number, a.status)
            })
            .collect();
        steps.push_str(&format!(
            "<tr id=\"step-{n}\" data-step=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td></tr>",
            badge(&v.status.to_string()),
            attempts.join("<br>"),
            n = esc(&v.name)
        ));
    }
    let log: String = logs
        .iter()
        .filter(|l| step.is_none_or(|s| l.step == s))
        .map(|l| {
            format!(
                "{} {}#{} {}\n",
                when(l.at),
                esc(&l.step),
                l.attempt,
                esc(&l.line)
            )
        })
        .collect();
    let refresh = (!r.status.is_final()).then_some(2);
    let shape = match crate::run_views::grid_html(&r.id, &views) {
        Some(grid) => format!("<h2>Nodes</h2>{grid}"),
        None => format!("<h2>DAG</h2>{}", dag_svg(&views)),
    };
    let log_title = match step {
        Some(s) => format!(
            "Log of {} <a href=\"/runs/{}\">(all steps)</a>",
            esc(s),
            esc(&r.id)
        ),
        None => "Log".into(),
    };
    let body = format!(
        "<p>{} {} · created {} · trace <code>{}</code>{}</p>{shape}\
         <h2>Timeline</h2>{}\
         <h2>Steps</h2><table id=steps><thead><tr><th>step</th><th>status</th><th>attempts</th></tr></thead><tbody>{steps}</tbody></table>\
         <h2>{log_title}</h2><pre id=log>{log}</pre>",
        esc(&r.workflow),
        badge(&r.status.to_string()),
        when(r.created_at),
        esc(trace_id),
        r.error
            .as_deref()
            .map(|e| format!(" · <span class=bad>{}</span>", esc(e)))
            .unwrap_or_default(),
        crate::run_views::timeline_svg(&views, engine::now_millis()),
    );
    let events = (!r.status.is_final()).then(|| format!("/api/runs/{}/events", r.id));
    page(
        &format!("Run {}", r.id),
        "Runs",
        refresh,
        events.as_deref(),
        &body,
    )
}

/// The schedules page.
pub fn schedules_page(schedules: &[Schedule]) -> String {
    let mut rows = String::new();
    for s in schedules {
        rows.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code> {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.cron),
            esc(&s.tz),
            esc(&s.workflow),
            if s.paused { "paused" } else { "active" },
            if s.last_fire > 0 {
                when(s.last_fire)
            } else {
                "never".into()
            }
        ));
    }
    page(
        "Schedules",
        "Schedules",
        None,
        None,
        &format!(
            "<table id=schedules><thead><tr><th>name</th><th>cron</th><th>workflow</th><th>state</th><th>last fire (UTC)</th></tr></thead><tbody>{rows}</tbody></table>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_escaping() {
        assert_eq!(when(0), "1970-01-01 00:00:00");
        assert_eq!(when(1_795_826_096_000), "2026-11-28 00:34:56");
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
