//! `nix-infra check`: the checks every run that renders a node's
//! configuration makes before it exists (placeholders, Nix syntax, secrets),
//! alone, with a per-node report. Exit status 2 on any problem.

use crate::Failure;
use crate::args::{Global, Output};
use clap::Args;
use workflows::domain::Role;
use workflows::preflight::Report;

/// `nix-infra check`
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Nodes to check ("a b"); default: every nodes/<node>.nix, plus one
    /// node (ctrl1, worker1, ingress1, fleet1) for each node type none of them uses.
    #[arg(long)]
    target: Option<String>,
    /// The role to check the nodes as; default: servers.yaml's, else by
    /// name as `cluster up` names nodes (ctrl…, ingress…, fleet…, others cluster).
    #[arg(long)]
    role: Option<Role>,
}

/// Runs `check`.
pub async fn run(global: &Global, args: CheckArgs) -> Result<(), Failure> {
    let c = global.origin().cluster()?;
    let report = workflows::preflight::check_repo(&c, args.target.as_deref(), args.role).await?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if global.output == Output::Json {
        println!("{}", json(&report));
    } else {
        print!("{}", text(&report));
    }
    if report.ok() {
        return Ok(());
    }
    let bad = report.nodes.iter().filter(|n| !n.problems.is_empty());
    let names: Vec<&str> = bad.map(|n| n.node.as_str()).collect();
    Err(Failure::usage(format!(
        "{} of {} nodes would not deploy: {}",
        names.len(),
        report.nodes.len(),
        names.join(", ")
    )))
}

fn json(r: &Report) -> serde_json::Value {
    let nodes: Vec<_> = r
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "node": n.node, "role": n.role, "ok": n.problems.is_empty(), "problems": n.problems,
            })
        })
        .collect();
    serde_json::json!({ "ok": r.ok(), "layout": r.layout, "nodes": nodes, "warnings": r.warnings })
}

fn text(r: &Report) -> String {
    let width = r
        .nodes
        .iter()
        .map(|n| n.node.as_str().len())
        .max()
        .unwrap_or(4);
    let mut out = format!("layout: {}\n", r.layout);
    for n in &r.nodes {
        let status = match n.problems.len() {
            0 => "ok".to_string(),
            1 => "1 problem".to_string(),
            k => format!("{k} problems"),
        };
        let role = n.role.to_string();
        out.push_str(&format!("{:width$}  {role:8} {status}\n", n.node.as_str()));
        for p in &n.problems {
            out.push_str(&format!("  {}: {}\n", p.file, p.problem));
        }
    }
    out
}
