//! From a command line to a workflow and its run input, checking everything
//! a run needs first, so bad input leaves nothing behind: the env file parses,
//! `init` has run, node type files exist, targets are servers of the cluster.

use crate::args::{AppCommand, ClusterCommand, ExecArgs, Global};
use crate::lifecycle::ClusterDir;
use crate::{Failure, cluster};
use anyhow::anyhow;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A run to start.
pub struct Prepared {
    /// The workflow.
    pub workflow: &'static str,
    /// Its input.
    pub input: Value,
    /// A secret made for this run only (cmd's variables), removed once it succeeds.
    pub run_secret: Option<String>,
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

/// The node names of `--target "a b"`.
pub fn targets(target: &str) -> Result<Vec<String>, Failure> {
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

impl ClusterDir {
    /// Fails unless `init` has run here.
    fn need_init(&self) -> Result<(), Failure> {
        let keys: Vec<String> = ["keys/id_ed25519.pub", "keys/age.key", "ca/root.pem"]
            .map(String::from)
            .to_vec();
        self.need(&keys, INIT_HINT)
    }

    /// Fails unless every role's node type file exists.
    fn need_types<'a>(&self, roles: impl IntoIterator<Item = &'a str>) -> Result<(), Failure> {
        let files: Vec<String> = roles
            .into_iter()
            .map(workflows::node::node_type_file)
            .collect();
        self.need(
            &files,
            "add the node type, or `nix-infra init --example` for a starting point",
        )
    }

    /// The input every node workflow starts from.
    fn base_input(&self) -> Value {
        let mut input = json!({ "cluster": self.name, "dir": self.dir, "nodes": [] });
        if let Some(f) = &self.env_file {
            input["env_file"] = json!(f);
        }
        input
    }

    /// (name, role) of targets that must be servers of the cluster: fleet
    /// nodes under `fleet`, the others under `cluster`.
    async fn existing(&self, target: &str, fleet: bool) -> Result<Vec<(String, String)>, Failure> {
        let names = targets(target)?;
        let inv = self.inventory().await?;
        names
            .into_iter()
            .map(|n| match inv.get(&n) {
                Some(role) if (role == "fleet") != fleet => Err(Failure::Usage(anyhow!(
                    "{n} is a {role} node; use `nix-infra {} …`",
                    if role == "fleet" { "fleet" } else { "cluster" }
                ))),
                Some(role) => Ok((n, role.clone())),
                None => Err(Failure::Usage(anyhow!(
                    "no server named {n} in cluster {} (its nodes: {})",
                    self.name,
                    if inv.is_empty() {
                        "none".to_string()
                    } else {
                        inv.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ))),
            })
            .collect()
    }
}

fn as_nodes(nodes: &[(String, String)]) -> Value {
    nodes
        .iter()
        .map(|(n, r)| json!({ "name": n, "role": r }))
        .collect()
}

fn roles(nodes: &[(String, String)]) -> Vec<&str> {
    nodes.iter().map(|(_, r)| r.as_str()).collect()
}

/// The execution options of a command that starts a run.
pub fn exec_of(cmd: &ClusterCommand) -> Option<&ExecArgs> {
    use ClusterCommand::*;
    match cmd {
        Up { exec, .. }
        | Provision { exec, .. }
        | Adopt { exec, .. }
        | InitCtrl { exec, .. }
        | InitNode { exec, .. }
        | UpdateNode { exec, .. }
        | DeployApps { exec, .. }
        | Unregister { exec, .. }
        | Destroy { exec, .. }
        | Cmd { exec, .. }
        | Action { exec, .. }
        | Upload { exec, .. }
        | Gc { exec, .. }
        | UpgradeNixos { exec, .. }
        | Rollback { exec, .. } => Some(exec),
        PortForward { .. } | Ssh { .. } | Etcd { .. } => None,
    }
}

/// `KEY=VALUE,…` or `@FILE` as `KEY=VALUE` lines, keys checked.
fn env_vars(spec: &str) -> Result<String, Failure> {
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(anyhow!("--env-vars @{path}: {e}")))?,
        None => spec.split(',').collect::<Vec<_>>().join("\n"),
    };
    let mut out = String::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (k, v) = line.split_once('=').ok_or_else(|| {
            Failure::Usage(anyhow!(
                "--env-vars: `{}` is not KEY=VALUE",
                line.split('=').next().unwrap_or("")
            ))
        })?;
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(Failure::Usage(anyhow!(
                "--env-vars: `{k}` is not a variable name"
            )));
        }
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

/// The run a `cluster …` (or, with `fleet`, a `fleet …`) command starts.
/// With `dry`, nothing is stored (for `plan`).
pub async fn cluster_run(
    global: &mut Global,
    cmd: &ClusterCommand,
    fleet: bool,
    dry: bool,
) -> Result<Prepared, Failure> {
    use ClusterCommand::*;
    let c = ClusterDir::open(global)?;
    c.need_init()?;
    let mut input = c.base_input();
    let mut run_secret = None;
    let server = |input: &mut Value, s: &crate::args::ServerArgs| {
        input["server_type"] = json!(s.server_type);
        input["image"] = json!(s.image);
        input["location"] = json!(s.location);
    };
    let cluster_only = |what: &str| -> Result<(), Failure> {
        if fleet {
            Err(Failure::Usage(anyhow!(
                "fleet nodes have no control plane or registry: `{what}` is a `nix-infra cluster` command"
            )))
        } else {
            Ok(())
        }
    };
    let workflow = match cmd {
        Up {
            ctrl,
            workers,
            ingress,
            server: s,
            ..
        } => {
            cluster_only("up")?;
            let mut nodes = Vec::new();
            for (count, prefix, role) in [
                (*ctrl, "ctrl", "ctrl"),
                (*workers, "worker", "cluster"),
                (*ingress, "ingress", "ingress"),
            ] {
                nodes.extend((1..=count).map(|k| (format!("{prefix}{k}"), role.to_string())));
            }
            let mut r = roles(&nodes);
            r.dedup();
            c.need_types(r)?;
            input["nodes"] = as_nodes(&nodes);
            server(&mut input, s);
            "cluster.up"
        }
        Provision {
            target,
            role,
            server: s,
            ..
        } => {
            let role = if fleet {
                "fleet".to_string()
            } else {
                role.clone()
            };
            if !matches!(role.as_str(), "ctrl" | "cluster" | "ingress" | "fleet") {
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
        Adopt { target, role, .. } => {
            let ctrl: Vec<String> = c
                .var("CTRL_NODES")
                .unwrap_or_default()
                .split(|ch: char| ch == ',' || ch.is_whitespace())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            let nodes: Vec<(String, String)> = targets(target)?
                .into_iter()
                .map(|n| {
                    let r = if fleet {
                        "fleet".to_string()
                    } else if ctrl.contains(&n) {
                        "ctrl".to_string()
                    } else {
                        role.clone()
                    };
                    (n, r)
                })
                .collect();
            if let Some((n, r)) = nodes
                .iter()
                .find(|(_, r)| !matches!(r.as_str(), "ctrl" | "cluster" | "ingress" | "fleet"))
            {
                return Err(Failure::Usage(anyhow!(
                    "{n}: role {r}; roles are ctrl, cluster and ingress"
                )));
            }
            input["nodes"] = as_nodes(&nodes);
            "node.adopt"
        }
        InitCtrl { target, .. } => {
            cluster_only("init-ctrl")?;
            let nodes = c.existing(target, false).await?;
            if let Some((n, r)) = nodes.iter().find(|(_, r)| r != "ctrl") {
                return Err(Failure::Usage(anyhow!(
                    "{n} is a {r} node, not a control node; use `cluster init-node`"
                )));
            }
            c.need_types(["ctrl"])?;
            input["nodes"] = as_nodes(&nodes);
            "node.init"
        }
        InitNode { target, groups, .. } => {
            let nodes = c.existing(target, fleet).await?;
            if let Some((n, _)) = nodes.iter().find(|(_, r)| r == "ctrl") {
                return Err(Failure::Usage(anyhow!(
                    "{n} is a control node; use `cluster init-ctrl`"
                )));
            }
            c.need_types(roles(&nodes))?;
            input["nodes"] = as_nodes(&nodes);
            if !groups.is_empty() {
                for n in input["nodes"].as_array_mut().into_iter().flatten() {
                    n["groups"] = json!(groups);
                }
            }
            "node.init"
        }
        UpdateNode { target, .. } | DeployApps { target, .. } => {
            let nodes = c.existing(target, fleet).await?;
            c.need_types(roles(&nodes))?;
            input["nodes"] = as_nodes(&nodes);
            "node.update"
        }
        Unregister { target, .. } => {
            cluster_only("unregister")?;
            input["nodes"] = as_nodes(&c.existing(target, false).await?);
            "node.unregister"
        }
        Destroy { target, .. } => {
            input["nodes"] = as_nodes(&c.existing(target, fleet).await?);
            "node.destroy"
        }
        Cmd {
            target,
            env_vars: vars,
            command,
            ..
        } => {
            input["nodes"] = as_nodes(&c.existing(target, fleet).await?);
            let mut args = json!({ "command": command.join(" ") });
            if let Some(spec) = vars {
                let text = env_vars(spec)?;
                let id = global.run_id.get_or_insert_with(engine::new_run_id).clone();
                let name = format!(
                    "env.{}",
                    id.replace(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-', "-")
                );
                if !dry {
                    use age::secrecy::SecretSlice;
                    let store = tasks::secrets::SecretStore::new(
                        c.dir.join("secrets"),
                        cluster::secret_key(&c.dir)?,
                    );
                    store
                        .store(&name, &SecretSlice::from(text.into_bytes()))
                        .map_err(|e| Failure::Other(e.into()))?;
                    run_secret = Some(name.clone());
                }
                args["env_secret"] = json!(name);
            }
            input["args"] = args;
            "node.cmd"
        }
        Action {
            target,
            app,
            save_as_secret,
            args,
            ..
        } => {
            let nodes = c.existing(target, fleet).await?;
            if save_as_secret.is_some() && nodes.len() != 1 {
                return Err(Failure::Usage(anyhow!(
                    "--save-as-secret needs exactly one target node"
                )));
            }
            c.need(
                &[format!("app_modules/{app}/action.sh")],
                "the app has no action",
            )?;
            input["nodes"] = as_nodes(&nodes);
            input["args"] = json!({ "app": app, "args": args, "save_as_secret": save_as_secret });
            "node.action"
        }
        Upload {
            target, src, dst, ..
        } => {
            let src = std::fs::canonicalize(src)
                .map_err(|e| Failure::Usage(anyhow!("--src {}: {e}", src.display())))?;
            if !dst.starts_with('/') {
                return Err(Failure::Usage(anyhow!(
                    "--dst {dst}: give an absolute path on the node"
                )));
            }
            input["nodes"] = as_nodes(&c.existing(target, fleet).await?);
            input["args"] = json!({ "src": src, "dst": dst });
            "node.upload"
        }
        Gc { target, .. } => {
            input["nodes"] = as_nodes(&c.existing(target, fleet).await?);
            "nix.gc"
        }
        UpgradeNixos { target, batch, .. } => {
            input["nodes"] = as_nodes(&c.existing(target, fleet).await?);
            input["args"] = json!({ "batch": batch });
            "nixos.upgrade"
        }
        Rollback { target, .. } => {
            input["nodes"] = as_nodes(&c.existing(target, fleet).await?);
            "nixos.rollback"
        }
        PortForward { .. } | Ssh { .. } | Etcd { .. } => {
            return Err(Failure::Usage(anyhow!("this command does not start a run")));
        }
    };
    c.provider()?;
    Ok(Prepared {
        workflow,
        input,
        run_secret,
    })
}

/// The run an `app …` command starts.
pub async fn app_run(global: &Global, cmd: &AppCommand) -> Result<(Prepared, ExecArgs), Failure> {
    use AppCommand::*;
    let c = ClusterDir::open(global)?;
    c.need_init()?;
    let mut input = c.base_input();
    let app_of = |a: &crate::args::AppArgs| -> Result<Value, Failure> {
        if !matches!(a.kind.as_str(), "service" | "backend" | "frontend") {
            return Err(Failure::Usage(anyhow!(
                "--kind {}: kinds are service, backend and frontend",
                a.kind
            )));
        }
        c.need(&[format!("app_modules/{}", a.app)], "no such app")?;
        Ok(json!({ "app": a.app, "kind": a.kind }))
    };
    // Nodes whose nodes/<node>.nix names the app (or must not, for remove).
    let imports = |node: &str, app: &str| -> bool {
        let text = std::fs::read_to_string(c.dir.join("nodes").join(format!("{node}.nix")))
            .unwrap_or_default();
        workflows::node::node_apps(&c.dir, &text)
            .iter()
            .any(|a| a == app)
    };
    let (workflow, exec) = match cmd {
        Register {
            app,
            port,
            env_prefix,
            app_env: env,
            exec,
        } => {
            let mut args = app_of(app)?;
            let env: BTreeMap<String, String> = env
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| Failure::Usage(anyhow!("--env-var {kv}: give KEY=VALUE")))
                })
                .collect::<Result<_, _>>()?;
            args["port"] = json!(port);
            args["env_prefix"] = json!(env_prefix);
            args["env"] = json!(env);
            input["args"] = args;
            ("app.register", exec)
        }
        Deploy { app, target, exec } | Remove { app, target, exec } => {
            input["args"] = app_of(app)?;
            let nodes = c.existing(target, false).await?;
            let deploying = matches!(cmd, Deploy { .. });
            for (n, _) in &nodes {
                if imports(n, &app.app) != deploying {
                    return Err(Failure::Usage(if deploying {
                        anyhow!(
                            "nodes/{n}.nix does not import ./app_modules/{}; add it there first",
                            app.app
                        )
                    } else {
                        anyhow!(
                            "nodes/{n}.nix still imports ./app_modules/{}; remove that import first",
                            app.app
                        )
                    }));
                }
            }
            c.need_types(roles(&nodes))?;
            input["nodes"] = as_nodes(&nodes);
            (
                if deploying {
                    "app.deploy"
                } else {
                    "app.remove"
                },
                exec,
            )
        }
        RegisterInstance { app, target, exec } | UnregisterInstance { app, target, exec } => {
            input["args"] = app_of(app)?;
            input["nodes"] = as_nodes(&c.existing(target, false).await?);
            let w = if matches!(cmd, RegisterInstance { .. }) {
                "app.register_instance"
            } else {
                "app.unregister_instance"
            };
            (w, exec)
        }
        Unregister { app, exec } => {
            input["args"] = app_of(app)?;
            ("app.unregister", exec)
        }
    };
    c.provider()?;
    Ok((
        Prepared {
            workflow,
            input,
            run_secret: None,
        },
        exec.clone(),
    ))
}

/// The run of `registry publish-image`.
pub async fn publish_run(
    global: &Global,
    file: &std::path::Path,
    target: Option<&str>,
) -> Result<Prepared, Failure> {
    let c = ClusterDir::open(global)?;
    c.need_init()?;
    let file = std::fs::canonicalize(file)
        .map_err(|e| Failure::Usage(anyhow!("--file {}: {e}", file.display())))?;
    let mut input = c.base_input();
    let nodes = match target {
        // Any node runs podman: cluster and fleet nodes alike.
        Some(t) => match c.existing(t, false).await {
            Ok(n) => n,
            Err(_) => c.existing(t, true).await?,
        },
        None => {
            let all: Vec<(String, String)> = c
                .inventory()
                .await?
                .into_iter()
                .filter(|(_, role)| role == "cluster")
                .collect();
            if all.is_empty() {
                return Err(Failure::Usage(anyhow!(
                    "cluster {} has no cluster nodes",
                    c.name
                )));
            }
            all
        }
    };
    input["nodes"] = as_nodes(&nodes);
    input["args"] = json!({ "file": file });
    Ok(Prepared {
        workflow: "image.publish",
        input,
        run_secret: None,
    })
}
