//! `nix-infra demo`: the whole node lifecycle on the local sandbox, no account, no cost.

use crate::args::{ExecArgs, Global, Output};
use crate::{Context, Failure, cluster, runs, sandbox};
use anyhow::anyhow;
use serde_json::json;
use std::path::{Path, PathBuf};

const NODES: [(&str, &str); 4] = [
    ("ctrl1", "ctrl"),
    ("worker1", "cluster"),
    ("worker2", "cluster"),
    ("ingress1", "ingress"),
];

fn exec() -> ExecArgs {
    ExecArgs {
        detach: false,
        queue: "nix-infra".into(),
        concurrency: 16,
    }
}

/// Runs the demo in `dir` (created if needed).
pub async fn run(global: &Global, keep: bool) -> Result<(), Failure> {
    let dir: PathBuf = if global.working_dir == Path::new(".") {
        PathBuf::from("nix-infra-demo")
    } else {
        global.working_dir.clone()
    };
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Other(anyhow!("{}: {e}", dir.display())))?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| Failure::Other(e.into()))?;
    eprintln!("== 1/5 cluster directory {}", dir.display());
    cluster::init(&dir, "demo", Output::Text)?;
    eprintln!("== 2/5 sandbox cloud");
    sandbox::up(&dir, Output::Text)?;
    let result = lifecycle(global, &dir, keep).await;
    if !keep {
        // Whatever happened above, leave no sandbox (and no nodes) behind.
        sandbox::down(&dir, Output::Text)?;
    }
    result
}

async fn lifecycle(global: &Global, dir: &Path, keep: bool) -> Result<(), Failure> {
    let dir = dir.to_path_buf();
    let mut g = global.clone();
    g.working_dir = dir.clone();
    g.database_url = None; // the demo's own SQLite state, in the demo directory
    let ctx = Context::open(g).await?;
    eprintln!(
        "== 3/5 provision {} nodes (servers, SSH, NixOS)",
        NODES.len()
    );
    let nodes: Vec<_> = NODES
        .iter()
        .map(|(n, r)| json!({"name": n, "role": r}))
        .collect();
    let input = json!({"cluster": "demo", "dir": dir, "nodes": nodes});
    let id = ctx
        .engine
        .create("node.provision", input, None)
        .await?
        .record()
        .id
        .clone();
    let provisioned = runs::execute(&ctx, &id, &exec()).await;
    eprintln!("== 4/5 summary");
    let state = ctx.engine.load(&id).await?;
    println!("\n{:<10} {:<8} {:<16} NIXOS", "NODE", "ROLE", "ADDRESS");
    for (node, role) in NODES {
        let out = |step: &str| {
            state
                .attempts
                .iter()
                .rev()
                .find(|a| a.step == format!("{step}/{node}") && a.output.is_some())
                .and_then(|a| a.output.clone())
                .unwrap_or_default()
        };
        println!(
            "{node:<10} {role:<8} {:<16} {}",
            out("create")["ipv4"].as_str().unwrap_or("-"),
            out("verify")["nixos_version"]
                .as_str()
                .unwrap_or("(failed)")
        );
    }
    println!(
        "\nlook at the run:  nix-infra -d {} runs show {id}   (also: runs logs, runs graph)",
        dir.display()
    );
    if keep {
        println!(
            "kept: the sandbox is still up; `nix-infra -d {} sandbox down` stops it",
            dir.display()
        );
        return provisioned;
    }
    eprintln!("== 5/5 destroy the nodes, then stop the sandbox");
    let names: Vec<_> = NODES.iter().map(|(n, _)| json!({"name": n})).collect();
    let input = json!({"cluster": "demo", "dir": dir, "nodes": names});
    let destroy = ctx
        .engine
        .create("node.destroy", input, None)
        .await?
        .record()
        .id
        .clone();
    let destroyed = runs::execute(&ctx, &destroy, &exec()).await;
    provisioned.and(destroyed)
}
