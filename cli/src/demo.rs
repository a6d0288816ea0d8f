//! `nix-infra demo`: a whole cluster lifecycle on the local sandbox, no account, no cost.

use crate::args::{ClusterCommand, ExecArgs, Global, Output, ServerArgs};
use crate::{Context, Failure, cluster, lifecycle, prepare, sandbox};
use age::secrecy::SecretSlice;
use anyhow::anyhow;
use std::path::{Path, PathBuf};

fn exec() -> ExecArgs {
    ExecArgs {
        detach: false,
        queue: "nix-infra".into(),
        concurrency: 64,
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
    eprintln!(
        "== 1/5 cluster repo {} (keys, CA, the example's node types and app)",
        dir.display()
    );
    cluster::init(&dir, "demo", Output::Text)?;
    cluster::init_example(&dir, Output::Text)?;
    store_demo_secret(&dir)?;
    eprintln!("== 2/5 sandbox cloud");
    sandbox::up(&dir, Output::Text)?;
    let result = lifecycle_run(global, &dir, keep).await;
    if !keep {
        // Whatever happened above, leave no sandbox (and no nodes) behind.
        sandbox::down(&dir, Output::Text)?;
    }
    result
}

/// The example's `hello` app reads the secret `hello-greeting`.
fn store_demo_secret(dir: &Path) -> Result<(), Failure> {
    let store = tasks::secrets::SecretStore::new(dir.join("secrets"), cluster::secret_key(dir)?);
    let have = store
        .list()
        .map_err(|e| Failure::Other(e.into()))?
        .iter()
        .any(|s| s.name == "hello-greeting");
    if !have {
        let value: [u8; 16] = rand::random();
        let text: String = value.iter().map(|b| format!("{b:02x}")).collect();
        store
            .store("hello-greeting", &SecretSlice::from(text.into_bytes()))
            .map_err(|e| Failure::Other(e.into()))?;
        println!(
            "stored secret hello-greeting (random; `nix-infra secrets get --name hello-greeting`)"
        );
    }
    Ok(())
}

async fn lifecycle_run(global: &Global, dir: &Path, keep: bool) -> Result<(), Failure> {
    let mut g = global.clone();
    g.working_dir = dir.to_path_buf();
    g.database_url = None; // the demo's own SQLite state, in the demo directory
    g.run_id = None;
    g.output = Output::Text;
    let up = ClusterCommand::Up {
        ctrl: 1,
        workers: 2,
        ingress: 1,
        server: ServerArgs {
            server_type: "cx22".into(),
            image: "ubuntu-24.04".into(),
            location: None,
        },
        exec: exec(),
    };
    let prepared = prepare::cluster_run(&mut g, &up, false, false).await?;
    let (workflow, input) = (prepared.workflow, prepared.input);
    let nodes: Vec<String> = input["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    let ctx = Context::open(g.clone()).await?;
    eprintln!(
        "== 3/5 cluster up: {} (servers, NixOS, etcd, overlay, secrets, registry)",
        nodes.join(", ")
    );
    let before = ctx.engine.list(&engine::RunFilter::default()).await?.len();
    let upped = lifecycle::start(&ctx, workflow, input, &exec()).await;
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
    let destroy = ClusterCommand::Destroy {
        target: nodes.join(" "),
        batch: true,
        exec: exec(),
    };
    let destroyed = match prepare::cluster_run(&mut g, &destroy, false, false).await {
        Ok(p) => lifecycle::start(&ctx, p.workflow, p.input, &exec()).await,
        Err(e) => Err(e),
    };
    upped.and(destroyed)
}
