//! The per-node summary printed when a node lifecycle run ends (the
//! results come from [`workflows::report`]).

use workflows::report::{NodeOutcome, NodeResult};

/// The summary as a table for people.
pub fn table(results: &[NodeResult]) -> String {
    let mut out = format!("{:<14} {:<9} {:<16} DETAIL\n", "NODE", "RESULT", "ADDRESS");
    for r in results {
        let detail = match (r.result, &r.step, &r.error) {
            (NodeOutcome::Ok, Some(s), _) => format!("done ({s})"),
            (_, Some(s), Some(e)) => format!("at {s}: {}", first_line(e)),
            (_, Some(s), None) => format!("at {s}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<14} {:<9} {:<16} {detail}\n",
            r.node,
            r.result.to_string(),
            r.ipv4.as_deref().unwrap_or("-")
        ));
    }
    out
}

fn first_line(e: &str) -> String {
    let line = e.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_string()
    }
}
