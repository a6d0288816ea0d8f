//! `nix-infra demo`: a whole cluster lifecycle on the local sandbox, no account, no cost.

use super::{init, sandbox};
use crate::args::{ExecArgs, Global, Output};
use crate::{Context, Failure, start};
use anyhow::anyhow;
use clap::Args;
use std::path::{Path, PathBuf};
use workflows::request::{Request, ServerOptions, up_nodes};

/// `nix-infra demo`
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Leave the nodes and the sandbox running afterwards.
    #[arg(long)]
    keep: bool,
}

fn exec() -> ExecArgs {
    ExecArgs {
        detach: false,
        queue: "nix-infra".into(),
        concurrency: 64,
    }
}

/// Runs the demo in `dir` (created if needed).
pub async fn run(global: &Global, args: DemoArgs) -> Result<(), Failure> {
    let keep = args.keep;
    let dir: PathBuf = if global.working_dir == Path::new(".") {
        PathBuf::from("nix-infra-demo")
    } else {
        global.working_dir.clone()
    };
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Other(anyhow!("{}: {e}", dir.display())))?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| Failure::Other(e.into()))?;
    eprintln!(
        "== 1/5 cluster repo {} (keys, CA, the example's node types and app)",
        dir.display()
    );
    init::init(&dir, "demo", Output::Text)?;
    init::example(&dir, global.env_file().as_deref(), Output::Text)?;
    eprintln!("== 2/5 sandbox cloud");
    sandbox::up(&dir, Output::Text)?;
    let result = lifecycle_run(global, &dir, keep).await;
    if !keep {
        // Whatever happened above, leave no sandbox (and no nodes) behind.
        sandbox::down(&dir, Output::Text)?;
    }
    result
}

async fn lifecycle_run(global: &Global, dir: &Path, keep: bool) -> Result<(), Failure> {
    let mut g = global.clone();
    g.working_dir = dir.to_path_buf();
    g.database_url = None; // the demo's own SQLite state, in the demo directory
    g.run_id = None;
    g.output = Output::Text;
    let up = Request::Up {
        ctrl: 1,
        workers: 2,
        ingress: 1,
        server: ServerOptions::default(),
        fleet: false,
    };
    let nodes: Vec<String> = up_nodes(1, 2, 1)?
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let checked = start::check(&g, up).await?;
    let ctx = Context::open(g.clone()).await?;
    eprintln!(
        "== 3/5 cluster up: {} (servers, NixOS, etcd, overlay, secrets, registry)",
        nodes.join(", ")
    );
    let before = ctx.engine.list(&engine::RunFilter::default()).await?.len();
    let upped = start::start(g.clone(), checked, &exec()).await;
    let runs = ctx.engine.list(&engine::RunFilter::default()).await?;
    let id = runs.first().map(|r| r.id.clone()).unwrap_or_default();
    eprintln!("== 4/5 look at it");
    println!(
        "the run:      nix-infra -d {d} runs show {id}   (also: runs logs {id}, runs graph {id})",
        d = dir.display()
    );
    if runs.len() > before {
        println!(
            "its plan:     nix-infra -d {} plan --run-id {id} cluster up",
            dir.display()
        );
    }
    println!(
        "a dashboard:  nix-infra -d {} serve   (then http://127.0.0.1:8080/)",
        dir.display()
    );
    if keep {
        println!(
            "kept: the nodes and the sandbox are still up; `nix-infra -d {d} cluster destroy --batch --target \"{}\"` then `nix-infra -d {d} sandbox down`",
            nodes.join(" "),
            d = dir.display()
        );
        return upped;
    }
    eprintln!("== 5/5 destroy the nodes, then stop the sandbox");
    let destroy = Request::Destroy {
        target: nodes.join(" "),
        fleet: false,
        ctrl_nodes: None,
    };
    let destroyed = match start::check(&g, destroy).await {
        Ok(checked) => start::start(g.clone(), checked, &exec()).await,
        Err(e) => Err(e),
    };
    upped.and(destroyed)
}
