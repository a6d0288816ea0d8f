//! `nix-infra cluster …`: node lifecycles as durable runs.

use crate::args::{ClusterCommand, ExecArgs, Global};
use crate::{Context, Failure, runs};
use anyhow::anyhow;
use engine::Created;
use serde_json::{Value, json};

/// The run input for a cluster command, from the flags and the working directory.
pub fn input(global: &Global, cmd: &ClusterCommand) -> Result<Value, Failure> {
    let dir = std::fs::canonicalize(&global.working_dir).map_err(|e| {
        Failure::Usage(anyhow!(
            "working directory {}: {e}",
            global.working_dir.display()
        ))
    })?;
    let cluster = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "cluster".into());
    let targets = |target: &str, role: Option<&str>| -> Result<Vec<Value>, Failure> {
        let nodes: Vec<Value> = target
            .split_whitespace()
            .map(|n| match role {
                Some(r) => json!({"name": n, "role": r}),
                None => json!({"name": n}),
            })
            .collect();
        if nodes.is_empty() {
            return Err(Failure::Usage(anyhow!("--target names no node")));
        }
        Ok(nodes)
    };
    match cmd {
        ClusterCommand::Provision {
            target,
            role,
            server_type,
            image,
            location,
            ..
        } => Ok(json!({
            "cluster": cluster, "dir": dir, "nodes": targets(target, Some(role))?,
            "server_type": server_type, "image": image, "location": location,
        })),
        ClusterCommand::Destroy { target, .. } => Ok(json!({
            "cluster": cluster, "dir": dir, "nodes": targets(target, None)?,
        })),
    }
}

/// Starts (or continues, with the same --run-id) a lifecycle run and executes it here.
pub async fn start(
    ctx: &Context,
    workflow: &str,
    input: Value,
    exec: &ExecArgs,
) -> Result<(), Failure> {
    let created = ctx
        .engine
        .create(workflow, input, ctx.global.run_id.clone())
        .await?;
    let run = created.record().clone();
    match created {
        Created::New(_) => eprintln!("started run {} ({workflow})", run.id),
        Created::Existing(_) => eprintln!("run {} already exists ({})", run.id, run.status),
    }
    if exec.detach {
        return runs::detach(ctx, &run.id, &exec.queue).await;
    }
    runs::execute(ctx, &run.id, exec).await
}
