//! `nix-infra cluster …` and `nix-infra plan`: node lifecycles as durable runs.
//!
//! Everything a run needs is checked here, before a run is created: the env
//! file parses, the keys and CA exist, every node type file is there, and every
//! target is a server of this cluster. A bad input leaves nothing behind.

use crate::args::{ClusterCommand, ExecArgs, Global, PlanCommand};
use crate::{Context, Failure, runs, summary};
use anyhow::anyhow;
use engine::{Created, RunStatus};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use tasks::provider::{Hetzner, LABEL_ROLE, Provider};

/// The cluster directory a command works on, with its env file read.
pub struct ClusterDir {
    /// The directory, absolute.
    pub dir: PathBuf,
    /// The cluster's name (its directory's name).
    pub name: String,
    /// The env file given with --env, if any.
    pub env_file: Option<PathBuf>,
    /// The env file's variables.
    pub env: BTreeMap<String, String>,
}

impl ClusterDir {
    /// Opens the working directory and parses its env file.
    pub fn open(global: &Global) -> Result<ClusterDir, Failure> {
        let dir = std::fs::canonicalize(&global.working_dir).map_err(|e| {
            Failure::Usage(anyhow!(
                "working directory {}: {e}",
                global.working_dir.display()
            ))
        })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "cluster".into());
        let env_file = match &global.env {
            Some(f) => Some(
                std::fs::canonicalize(f)
                    .map_err(|e| Failure::Usage(anyhow!("env file {}: {e}", f.display())))?,
            ),
            None => None,
        };
        let path = env_file.clone().unwrap_or_else(|| dir.join(".env"));
        let env = crate::cluster::read_env_file(&path)?;
        Ok(ClusterDir {
            dir,
            name,
            env_file,
            env,
        })
    }

    /// A variable from the environment, else the env file.
    pub fn var(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.env.get(key).cloned())
            .filter(|v| !v.is_empty())
    }

    /// Fails unless every file exists, naming the missing ones.
    pub(crate) fn need(&self, files: &[String], hint: &str) -> Result<(), Failure> {
        let missing: Vec<_> = files
            .iter()
            .filter(|f| !self.dir.join(f).exists())
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Failure::Usage(anyhow!(
                "{} has no {} ({hint})",
                self.dir.display(),
                missing.join(", ")
            )))
        }
    }

    /// The provider, from HCLOUD_TOKEN and HCLOUD_ENDPOINT.
    pub fn provider(&self) -> Result<Hetzner, Failure> {
        let token = self.var("HCLOUD_TOKEN").ok_or_else(|| {
            Failure::Usage(anyhow!(
                "HCLOUD_TOKEN is not set: put it in {}, or run `nix-infra sandbox up` for a local cloud",
                self.env_file
                    .clone()
                    .unwrap_or_else(|| self.dir.join(".env"))
                    .display()
            ))
        })?;
        let endpoint = self
            .var("HCLOUD_ENDPOINT")
            .unwrap_or_else(|| tasks::provider::DEFAULT_ENDPOINT.into());
        Hetzner::new(endpoint, token).map_err(|e| Failure::Usage(e.into()))
    }

    /// Node name → role of every server of the cluster.
    pub(crate) async fn inventory(&self) -> Result<BTreeMap<String, String>, Failure> {
        let servers = self
            .provider()?
            .list_servers(&self.name)
            .await
            .map_err(|e| Failure::Other(anyhow!("cannot list the cluster's servers: {e}")))?;
        Ok(servers
            .into_iter()
            .filter_map(|s| {
                let role = s.labels.get(LABEL_ROLE).cloned().unwrap_or_default();
                Some((s.node()?.to_string(), role))
            })
            .collect())
    }
}

/// Asks before destroying, on a terminal without --batch.
pub fn confirm(cmd: &ClusterCommand, input: &Value) -> Result<(), Failure> {
    let batch = match cmd {
        ClusterCommand::Destroy { batch, .. } => *batch,
        _ => return Ok(()),
    };
    if batch || !std::io::stdin().is_terminal() {
        return Ok(());
    }
    let names: Vec<&str> = input["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str())
        .collect();
    eprint!(
        "destroy {} (servers deleted, certificates revoked)? [y/N] ",
        names.join(", ")
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::Other(e.into()))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::Usage(anyhow!("not confirmed; nothing destroyed")))
    }
}

/// Starts (or continues, with the same --run-id) a lifecycle run, executes it
/// here, and prints each node's result.
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
    execute(ctx, &run.id, exec).await
}

/// Executes a node lifecycle run and prints its per-node summary.
pub async fn execute(ctx: &Context, run_id: &str, exec: &ExecArgs) -> Result<(), Failure> {
    let outcome = runs::execute_outcome(ctx, run_id, exec).await?;
    let state = ctx.engine.load(run_id).await?;
    let nodes = summary::nodes(&state);
    if !ctx.json() {
        if matches!(state.run.workflow.as_str(), "node.cmd" | "node.action") {
            print_output(ctx, &state).await?;
        }
        if !nodes.is_empty() {
            println!("\n{}", summary::table(&nodes));
        }
    }
    runs::finish(ctx, &outcome, Some(json!(nodes)))
}

/// `nix-infra plan …`: the steps a command would run (or, for an existing
/// --run-id, the run's persisted plan and which steps are done).
pub async fn plan(global: &Global, cmd: &PlanCommand) -> Result<(), Failure> {
    if let Some(id) = &global.run_id {
        let ctx = Context::open(global.clone()).await?;
        if let Ok(state) = ctx.engine.load(id).await {
            let views = engine::inspect::step_views(&state);
            if ctx.json() {
                let steps: Vec<_> = views.iter().map(|v| json!({"name": v.name, "kind": v.kind, "deps": v.deps, "status": v.status})).collect();
                println!(
                    "{}",
                    json!({"run": id, "workflow": state.run.workflow, "status": state.run.status, "steps": steps})
                );
            } else {
                let done = views
                    .iter()
                    .filter(|v| v.status == engine::StepStatus::Succeeded)
                    .count();
                println!(
                    "run {id} ({}, {}): {done} of {} steps done",
                    state.run.workflow,
                    state.run.status,
                    views.len()
                );
                for v in &views {
                    println!(
                        "  {:<10} {:<24} after {}",
                        v.status.to_string(),
                        v.name,
                        deps(&v.deps)
                    );
                }
                if state.run.status != RunStatus::Succeeded {
                    println!("continue it: nix-infra runs resume {id}");
                }
            }
            return Ok(());
        }
    }
    let mut g = global.clone();
    let prepared = match cmd {
        PlanCommand::Cluster(c) => crate::prepare::cluster_run(&mut g, c, false, true).await?,
        PlanCommand::Fleet(c) => crate::prepare::cluster_run(&mut g, c, true, true).await?,
        PlanCommand::App(c) => crate::prepare::app_run(&g, c).await?.0,
    };
    let (workflow, input) = (prepared.workflow, prepared.input);
    let w = workflows::registry()
        .get(workflow)
        .ok_or_else(|| Failure::Other(anyhow!("unknown workflow {workflow}")))?;
    let plan = w.plan(&input).map_err(|e| Failure::Usage(e.into()))?;
    if global.output == crate::args::Output::Json {
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|s| json!({"name": s.name, "kind": s.kind, "deps": s.deps}))
            .collect();
        println!("{}", json!({"workflow": workflow, "steps": steps}));
    } else {
        println!("{workflow}: {} steps", plan.steps.len());
        for s in &plan.steps {
            println!("  {:<24} after {}", s.name, deps(&s.deps));
        }
    }
    Ok(())
}

/// Each node's output of a command run, `node | line`, from the run's logs.
async fn print_output(ctx: &Context, state: &engine::RunState) -> Result<(), Failure> {
    for step in state
        .run
        .plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind.as_str(), "cmd" | "action"))
    {
        let node = step.subject().unwrap_or(&step.name);
        let lines = ctx.engine.logs(&state.run.id, Some(&step.name)).await?;
        // Only the last attempt's lines: a resumed command shows what it last printed.
        let last = lines.iter().map(|l| l.attempt).max();
        for l in lines.iter().filter(|l| Some(l.attempt) == last) {
            println!("{node:<14}| {}", l.line);
        }
    }
    Ok(())
}

fn deps(d: &[String]) -> String {
    if d.is_empty() {
        "-".into()
    } else {
        d.join(", ")
    }
}
