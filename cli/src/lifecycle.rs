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
    fn need(&self, files: &[String], hint: &str) -> Result<(), Failure> {
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
    async fn inventory(&self) -> Result<BTreeMap<String, String>, Failure> {
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

fn check_name(n: &str) -> Result<(), Failure> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !n.starts_with('-')
        && !n.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Failure::Usage(anyhow!(
            "`{n}` is not a node name (lowercase letters, digits and '-', at most 63)"
        )))
    }
}

fn targets(target: &str) -> Result<Vec<String>, Failure> {
    let nodes: Vec<String> = target.split_whitespace().map(str::to_string).collect();
    if nodes.is_empty() {
        return Err(Failure::Usage(anyhow!("--target names no node")));
    }
    for n in &nodes {
        check_name(n)?;
    }
    Ok(nodes)
}

const INIT_HINT: &str = "run `nix-infra init`";

/// The workflow and run input a cluster command runs, after checking everything it needs.
pub async fn prepare(
    global: &Global,
    cmd: &ClusterCommand,
) -> Result<(&'static str, Value), Failure> {
    let c = ClusterDir::open(global)?;
    let keys: Vec<String> = ["keys/id_ed25519.pub", "keys/age.key", "ca/root.pem"]
        .map(String::from)
        .to_vec();
    c.need(&keys, INIT_HINT)?;
    let types = |roles: &[&str]| -> Result<(), Failure> {
        let files: Vec<String> = roles
            .iter()
            .map(|r| workflows::node::node_type_file(r))
            .collect();
        c.need(
            &files,
            "add the node type, or `nix-infra init --example` for a starting point",
        )
    };
    let mut input = json!({ "cluster": c.name, "dir": c.dir });
    if let Some(f) = &c.env_file {
        input["env_file"] = json!(f);
    }
    let server = |input: &mut Value, s: &crate::args::ServerArgs| {
        input["server_type"] = json!(s.server_type);
        input["image"] = json!(s.image);
        input["location"] = json!(s.location);
    };
    // Targets that must already be servers, with their roles from the labels.
    let existing = |nodes: Vec<String>,
                    inv: &BTreeMap<String, String>|
     -> Result<Vec<(String, String)>, Failure> {
        nodes
            .into_iter()
            .map(|n| match inv.get(&n) {
                Some(role) => Ok((n, role.clone())),
                None => Err(Failure::Usage(anyhow!(
                    "no server named {n} in cluster {} (its nodes: {})",
                    c.name,
                    if inv.is_empty() {
                        "none".to_string()
                    } else {
                        inv.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ))),
            })
            .collect()
    };
    let as_nodes = |nodes: &[(String, String)]| -> Value {
        nodes
            .iter()
            .map(|(n, r)| json!({ "name": n, "role": r }))
            .collect()
    };
    let workflow = match cmd {
        ClusterCommand::Up {
            ctrl,
            workers,
            ingress,
            server: s,
            ..
        } => {
            let mut nodes = Vec::new();
            let mut roles = vec!["ctrl"];
            for (count, prefix, role) in [
                (*ctrl, "ctrl", "ctrl"),
                (*workers, "worker", "cluster"),
                (*ingress, "ingress", "ingress"),
            ] {
                if count > 0 && !roles.contains(&role) {
                    roles.push(role);
                }
                nodes.extend((1..=count).map(|k| (format!("{prefix}{k}"), role.to_string())));
            }
            types(&roles)?;
            input["nodes"] = as_nodes(&nodes);
            server(&mut input, s);
            "cluster.up"
        }
        ClusterCommand::Provision {
            target,
            role,
            server: s,
            ..
        } => {
            if !matches!(role.as_str(), "ctrl" | "cluster" | "ingress") {
                return Err(Failure::Usage(anyhow!(
                    "--role {role}: roles are ctrl, cluster and ingress"
                )));
            }
            let nodes: Vec<_> = targets(target)?
                .into_iter()
                .map(|n| (n, role.clone()))
                .collect();
            input["nodes"] = as_nodes(&nodes);
            server(&mut input, s);
            "node.provision"
        }
        ClusterCommand::InitCtrl { target, .. } => {
            let nodes = existing(targets(target)?, &c.inventory().await?)?;
            if let Some((n, r)) = nodes.iter().find(|(_, r)| r != "ctrl") {
                return Err(Failure::Usage(anyhow!(
                    "{n} is a {r} node, not a control node; use `cluster init-node`"
                )));
            }
            types(&["ctrl"])?;
            input["nodes"] = as_nodes(&nodes);
            "node.init"
        }
        ClusterCommand::InitNode { target, groups, .. } => {
            let nodes = existing(targets(target)?, &c.inventory().await?)?;
            if let Some((n, _)) = nodes.iter().find(|(_, r)| r == "ctrl") {
                return Err(Failure::Usage(anyhow!(
                    "{n} is a control node; use `cluster init-ctrl`"
                )));
            }
            let roles: Vec<&str> = nodes.iter().map(|(_, r)| r.as_str()).collect();
            types(&roles)?;
            input["nodes"] = as_nodes(&nodes);
            if !groups.is_empty() {
                for n in input["nodes"].as_array_mut().into_iter().flatten() {
                    n["groups"] = json!(groups);
                }
            }
            "node.init"
        }
        ClusterCommand::UpdateNode { target, .. } | ClusterCommand::DeployApps { target, .. } => {
            let nodes = existing(targets(target)?, &c.inventory().await?)?;
            let roles: Vec<&str> = nodes.iter().map(|(_, r)| r.as_str()).collect();
            types(&roles)?;
            input["nodes"] = as_nodes(&nodes);
            "node.update"
        }
        ClusterCommand::Unregister { target, .. } => {
            input["nodes"] = as_nodes(&existing(targets(target)?, &c.inventory().await?)?);
            "node.unregister"
        }
        ClusterCommand::Destroy { target, .. } => {
            let nodes = existing(targets(target)?, &c.inventory().await?)?;
            input["nodes"] = as_nodes(&nodes);
            "node.destroy"
        }
    };
    c.provider()?;
    Ok((workflow, input))
}

/// The execution options of a cluster command.
pub fn exec_of(cmd: &ClusterCommand) -> &ExecArgs {
    match cmd {
        ClusterCommand::Up { exec, .. }
        | ClusterCommand::Provision { exec, .. }
        | ClusterCommand::InitCtrl { exec, .. }
        | ClusterCommand::InitNode { exec, .. }
        | ClusterCommand::UpdateNode { exec, .. }
        | ClusterCommand::DeployApps { exec, .. }
        | ClusterCommand::Unregister { exec, .. }
        | ClusterCommand::Destroy { exec, .. } => exec,
    }
}

/// Asks before destroying, on a terminal without --batch.
pub fn confirm(global: &Global, cmd: &ClusterCommand, input: &Value) -> Result<(), Failure> {
    if !matches!(cmd, ClusterCommand::Destroy { .. })
        || global.batch
        || !std::io::stdin().is_terminal()
    {
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
        println!("\n{}", summary::table(&nodes));
    }
    runs::finish(ctx, &outcome, Some(json!(nodes)))
}

/// `nix-infra plan …`: the steps a command would run (or, for an existing
/// --run-id, the run's persisted plan and which steps are done).
pub async fn plan(global: &Global, cmd: &PlanCommand) -> Result<(), Failure> {
    let PlanCommand::Cluster(cmd) = cmd;
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
    let (workflow, input) = prepare(global, cmd).await?;
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

fn deps(d: &[String]) -> String {
    if d.is_empty() {
        "-".into()
    } else {
        d.join(", ")
    }
}
