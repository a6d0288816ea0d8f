//! Checks of the node commands (`cluster …` and `fleet …`).

use super::adopt::{adopt_first, refuse_unlabelled, test_nodes};
use super::flags::{
    ctrl_targets, ctrl_var, known_ctrl_nodes, typed, upload_args, upload_only, with_settings,
};
use super::{
    Checked, Request, RunSecret, ServerOptions, args_json, base_input, channel_of, refused, to_json,
};
use crate::cluster::{Cluster, ClusterError};
use crate::domain::{NodeName, Role, ServiceGroup};
use crate::node::args::{ActionArgs, CmdArgs, UpgradeArgs};
use crate::node::{NodeInput, NodesInput};

/// The node names of `--target "a b"`, each checked.
pub fn targets(target: &str) -> Result<Vec<NodeName>, ClusterError> {
    let nodes = NodeName::list(target).map_err(|e| refused(e.to_string()))?;
    if nodes.is_empty() {
        return Err(refused("--target names no node"));
    }
    Ok(nodes)
}

/// A node of a run input.
pub(super) fn node(name: &NodeName, role: Role) -> NodeInput {
    NodeInput {
        name: name.clone(),
        role,
        groups: Vec::new(),
        relabel: false,
    }
}

fn nodes(list: &[(NodeName, Role)]) -> Vec<NodeInput> {
    list.iter().map(|(n, r)| node(n, *r)).collect()
}

fn roles(list: &[(NodeName, Role)]) -> Vec<Role> {
    let mut r: Vec<Role> = list.iter().map(|(_, r)| *r).collect();
    r.sort();
    r.dedup();
    r
}

/// (name, role) of targets that are servers of the cluster: fleet nodes
/// with `fleet`, the others without.
pub(super) async fn existing(
    c: &Cluster,
    target: &str,
    fleet: bool,
) -> Result<Vec<(NodeName, Role)>, ClusterError> {
    existing_as(c, target, fleet, None).await
}

/// [`existing`], where a server without a role (a Dart-format
/// `servers.yaml`) takes `given`, else the command's default.
pub(super) async fn existing_as(
    c: &Cluster,
    target: &str,
    fleet: bool,
    given: Option<Role>,
) -> Result<Vec<(NodeName, Role)>, ClusterError> {
    let names = targets(target)?;
    let inv = c.inventory().await?;
    let unknown: Vec<NodeName> = names
        .iter()
        .filter(|n| !inv.nodes.contains_key(*n) && !inv.unassigned.contains(*n))
        .filter(|n| !inv.unusable.contains_key(n.as_str()))
        .cloned()
        .collect();
    let adoptable = c.unlabelled(&unknown).await?;
    if !adoptable.is_empty() {
        return Err(adopt_first(c, &adoptable, fleet));
    }
    names
        .into_iter()
        .map(|n| match inv.nodes.get(&n) {
            Some(role) if role.is_fleet() != fleet => Err(refused(format!(
                "{n} is a {role} node; use `nix-infra {} …`",
                if role.is_fleet() { "fleet" } else { "cluster" }
            ))),
            Some(role) => Ok((n, *role)),
            None if inv.unassigned.contains(&n) => {
                let default = if fleet { Role::Fleet } else { Role::Cluster };
                Ok((n, given.unwrap_or(default)))
            }
            None => match inv.unusable.get(n.as_str()) {
                Some(why) => Err(refused(format!(
                    "server {n} of cluster {} cannot be a node: {why}",
                    c.name
                ))),
                None => {
                    let known: Vec<String> = inv
                        .nodes
                        .keys()
                        .chain(&inv.unassigned)
                        .map(NodeName::to_string)
                        .collect();
                    Err(refused(format!(
                        "no server named {n} in cluster {} (its nodes: {})",
                        c.name,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )))
                }
            },
        })
        .collect()
}

fn cluster_only(fleet: bool, what: &str) -> Result<(), ClusterError> {
    if fleet {
        return Err(refused(format!(
            "fleet nodes have no control plane or registry: `{what}` is a `nix-infra cluster` command"
        )));
    }
    Ok(())
}

/// The input of a run that creates servers and installs NixOS on them; the
/// installer the env names (`NIXOS_INFECT_URL`, `NIXOS_INFECT_SHA256`) must
/// be usable before the run exists.
fn with_server(
    c: &Cluster,
    mut i: NodesInput,
    s: ServerOptions,
) -> Result<NodesInput, ClusterError> {
    tasks::install::Installer::from_vars(c.var("NIXOS_INFECT_URL"), c.var("NIXOS_INFECT_SHA256"))
        .map_err(|e| refused(e.to_string()))?;
    i.channel = s.channel()?;
    i.placement_group = s.placement_group;
    i.server_type = s.server_type;
    i.image = s.image;
    i.location = s.location;
    Ok(i)
}

/// Most workers (or ingress nodes) one `cluster up` makes.
pub const MAX_PER_ROLE: u32 = 100;

/// `ctrl1.., worker1.., ingress1..` of `cluster up`.
pub fn up_nodes(
    ctrl: u32,
    workers: u32,
    ingress: u32,
) -> Result<Vec<(NodeName, Role)>, ClusterError> {
    if !(1..=7).contains(&ctrl) {
        return Err(refused(format!(
            "--ctrl {ctrl}: a cluster has 1 to 7 control nodes"
        )));
    }
    for (flag, n) in [("--workers", workers), ("--ingress", ingress)] {
        if n > MAX_PER_ROLE {
            return Err(refused(format!(
                "{flag} {n}: at most {MAX_PER_ROLE} per command"
            )));
        }
    }
    let mut out = Vec::new();
    for (count, prefix, role) in [
        (ctrl, "ctrl", Role::Ctrl),
        (workers, "worker", Role::Cluster),
        (ingress, "ingress", Role::Ingress),
    ] {
        for k in 1..=count {
            let name = NodeName::new(format!("{prefix}{k}")).map_err(|e| refused(e.to_string()))?;
            out.push((name, role));
        }
    }
    Ok(out)
}

/// The checked run of a `cluster …` (or `fleet …`) request.
pub(super) async fn check(
    r: Request,
    c: &Cluster,
    mut run_id: Option<String>,
    local_files: bool,
) -> Result<Checked, ClusterError> {
    use Request::*;
    c.need_init()?;
    let c = &with_settings(&r, c)?;
    let mut i = base_input(c, Vec::new());
    let mut run_secret = None;
    let mut confirm = None;
    let workflow = match r {
        Up {
            ctrl,
            workers,
            ingress,
            server,
            fleet,
        } => {
            cluster_only(fleet, "up")?;
            c.need_cloud("`cluster up`")?;
            let list = up_nodes(ctrl, workers, ingress)?;
            c.need_types(roles(&list))?;
            refuse_unlabelled(c, &list, false).await?;
            i = with_server(c, i, server)?;
            i.nodes = nodes(&list);
            "cluster.up"
        }
        Provision {
            target,
            role,
            fleet,
            server,
        } => {
            c.need_cloud("`provision`")?;
            let role = if fleet { Role::Fleet } else { role };
            let list: Vec<_> = targets(&target)?.into_iter().map(|n| (n, role)).collect();
            refuse_unlabelled(c, &list, fleet).await?;
            i = with_server(c, i, server)?;
            i.nodes = nodes(&list);
            "node.provision"
        }
        Adopt {
            target,
            role,
            fleet,
            ..
        } => {
            let ctrl = ctrl_var(c);
            let list: Vec<_> = targets(&target)?
                .into_iter()
                .map(|n| {
                    let r = match () {
                        _ if fleet => Role::Fleet,
                        _ if ctrl.iter().any(|c| c == n.as_str()) => Role::Ctrl,
                        _ => role,
                    };
                    (n, r)
                })
                .collect();
            i.nodes = nodes(&list);
            "node.adopt"
        }
        InitCtrl {
            target,
            fleet,
            nixos_version,
            ..
        } => {
            cluster_only(fleet, "init-ctrl")?;
            i.channel = channel_of(nixos_version.as_deref())?;
            i.nodes = ctrl_targets(c, &target).await?;
            let relabel: Vec<&str> = i
                .nodes
                .iter()
                .filter(|n| n.relabel)
                .map(|n| n.name.as_str())
                .collect();
            if !relabel.is_empty() {
                confirm = Some(format!(
                    "make {} control nodes (provisioned as cluster nodes)?",
                    relabel.join(", ")
                ));
            }
            c.need_types([Role::Ctrl])?;
            "node.init"
        }
        UpdateCtrl {
            target,
            fleet,
            nixos_version,
            rebuild,
            ..
        } => {
            cluster_only(fleet, "update-ctrl")?;
            let list = existing(c, &target, false).await?;
            if let Some((n, r)) = list.iter().find(|(_, r)| !r.is_ctrl()) {
                return Err(refused(format!(
                    "{n} is a {r} node, not a control node; use `cluster update-node`"
                )));
            }
            c.need_types([Role::Ctrl])?;
            i.channel = channel_of(nixos_version.as_deref())?;
            i.nodes = nodes(&list);
            upload_only(&mut i, rebuild);
            "node.update"
        }
        InitNode {
            target,
            groups,
            fleet,
            ctrl_nodes,
            node_type,
            nixos_version,
        } => {
            known_ctrl_nodes(c, ctrl_nodes.as_deref()).await?;
            i.channel = channel_of(nixos_version.as_deref())?;
            let list = typed(c, &target, fleet, node_type).await?;
            if let Some((n, _)) = list.iter().find(|(_, r)| r.is_ctrl()) {
                return Err(refused(format!(
                    "{n} is a control node; use `cluster init-ctrl`"
                )));
            }
            let groups: Vec<String> = ServiceGroup::list(&groups)
                .map_err(|e| refused(format!("--service-group: {e}")))?
                .into_iter()
                .map(String::from)
                .collect();
            c.need_types(roles(&list))?;
            i.nodes = nodes(&list);
            for n in &mut i.nodes {
                n.groups = groups.clone();
            }
            "node.init"
        }
        UpdateNode {
            target,
            fleet,
            ctrl_nodes,
            node_type,
            nixos_version,
            rebuild,
        } => {
            known_ctrl_nodes(c, ctrl_nodes.as_deref()).await?;
            i.channel = channel_of(nixos_version.as_deref())?;
            let list = typed(c, &target, fleet, node_type).await?;
            c.need_types(roles(&list))?;
            i.nodes = nodes(&list);
            upload_only(&mut i, rebuild);
            "node.update"
        }
        DeployApps {
            target,
            fleet,
            rebuild,
            test_dir,
        } => {
            if let Some(d) = test_dir {
                i.nodes_dir = Some(test_nodes(c, &d)?);
            }
            let list = existing(c, &target, fleet).await?;
            c.need_types(roles(&list))?;
            i.nodes = nodes(&list);
            upload_only(&mut i, rebuild);
            "node.update"
        }
        Unregister { target, fleet } => {
            cluster_only(fleet, "unregister")?;
            i.nodes = nodes(&existing(c, &target, false).await?);
            "node.unregister"
        }
        Destroy {
            target,
            fleet,
            ctrl_nodes,
        } => {
            known_ctrl_nodes(c, ctrl_nodes.as_deref()).await?;
            i.nodes = nodes(&existing(c, &target, fleet).await?);
            c.need_cloud("`destroy`")?;
            let names: Vec<&str> = i.nodes.iter().map(|n| n.name.as_str()).collect();
            confirm = Some(format!(
                "destroy {} (servers deleted, certificates revoked)?",
                names.join(", ")
            ));
            "node.destroy"
        }
        Cmd {
            target,
            fleet,
            command,
            env_vars,
        } => {
            i.nodes = nodes(&existing(c, &target, fleet).await?);
            if command.trim().is_empty() {
                return Err(refused("give the command to run"));
            }
            let mut args = CmdArgs {
                command,
                env_secret: None,
            };
            if let Some(spec) = env_vars {
                let text = env_vars_text(&spec, local_files)?;
                let secret = run_env_secret(c, text, &mut run_id)?;
                args.env_secret = Some(secret.name.clone());
                run_secret = Some(secret);
            }
            i.args = args_json(&args);
            "node.cmd"
        }
        Action {
            target,
            fleet,
            app,
            cmd,
            args,
            env_vars,
            save_as_secret,
        } => {
            let list = existing(c, &target, fleet).await?;
            if save_as_secret.is_some() && list.len() != 1 {
                return Err(refused("--save-as-secret needs exactly one target node"));
            }
            c.need(
                &[crate::node::script_path(&app).display().to_string()],
                "the app has no action",
            )?;
            i.nodes = nodes(&list);
            let mut a = ActionArgs {
                app,
                args: super::action::words(cmd.as_deref().unwrap_or(""))?,
                save_as_secret,
                env_secret: None,
            };
            a.args.extend(args);
            if let Some(spec) = env_vars {
                let text = env_vars_text(&spec, local_files)?;
                super::action::known_placeholders(&i, &text)?;
                let secret = run_env_secret(c, text, &mut run_id)?;
                a.env_secret = Some(secret.name.clone());
                run_secret = Some(secret);
            }
            i.args = args_json(&a);
            "node.action"
        }
        Upload {
            target,
            fleet,
            src,
            dst,
            files,
            remote_path,
        } => {
            let args = upload_args(src, dst, files, remote_path)?;
            i.nodes = nodes(&existing(c, &target, fleet).await?);
            i.args = args_json(&args);
            "node.upload"
        }
        Gc { target, fleet } => {
            i.nodes = nodes(&existing(c, &target, fleet).await?);
            "nix.gc"
        }
        UpgradeNixos {
            target,
            fleet,
            batch,
            nixos_version,
        } => {
            i.nodes = nodes(&existing(c, &target, fleet).await?);
            let channel = match nixos_version {
                Some(v) => Some(channel_of(Some(&v))?),
                None => None,
            };
            i.args = args_json(&UpgradeArgs {
                batch: batch as usize,
                channel,
            });
            "nixos.upgrade"
        }
        Rollback { target, fleet } => {
            i.nodes = nodes(&existing(c, &target, fleet).await?);
            "nixos.rollback"
        }
        _ => return Err(refused("not a node command")),
    };
    c.provider()?;
    preflight(c, workflow, &i).await?;
    let creates_servers = matches!(workflow, "cluster.up" | "node.provision");
    Ok(Checked {
        workflow: workflow.into(),
        input: to_json(&i, creates_servers),
        run_id,
        run_secret,
        confirm,
    })
}

/// The checks of every node's configuration before a run that renders it
/// (or, for `provision`, creates its server): refused naming every problem.
/// A server can be provisioned before the repo has its node type, so
/// `provision` checks the nodes whose node type exists.
async fn preflight(c: &Cluster, workflow: &str, i: &NodesInput) -> Result<(), ClusterError> {
    match workflow {
        "cluster.up" | "node.init" | "node.update" => crate::preflight::refuse_problems(c, i).await,
        "node.provision" => {
            let mut typed = i.clone();
            typed
                .nodes
                .retain(|n| c.dir.join(n.role.node_type_file_in(&c.dir)).exists());
            crate::preflight::refuse_problems(c, &typed).await
        }
        _ => Ok(()),
    }
}

/// Most bytes `--env-vars @FILE` reads.
const MAX_ENV_FILE: u64 = 1 << 20;

/// A text file of at most [`MAX_ENV_FILE`] bytes.
fn read_small(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_ENV_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_ENV_FILE {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(text)
}

/// The run's own secret `env.<run id>` holding `text` (a run id is made
/// now when none was given); the secret key must be usable.
fn run_env_secret(
    c: &Cluster,
    text: String,
    run_id: &mut Option<String>,
) -> Result<RunSecret, ClusterError> {
    let id = run_id.get_or_insert_with(engine::new_run_id).clone();
    let name = format!(
        "env.{}",
        id.replace(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-', "-")
    );
    tasks::secrets::check_name(&name).map_err(|_| {
        refused(format!(
            "--run-id {id}: too long for --env-vars (its secret `env.<run id>` has at most 64 characters)"
        ))
    })?;
    c.secret_key()?;
    Ok(RunSecret {
        name,
        value: text.into(),
        dir: c.dir.clone(),
        env_file: c.env_file.clone(),
    })
}

/// `KEY=VALUE,…` or, with `local_files` (not over the API), `@FILE` as
/// `KEY=VALUE` lines, keys checked.
pub fn env_vars_text(spec: &str, local_files: bool) -> Result<String, ClusterError> {
    if spec.starts_with('@') && !local_files {
        return Err(refused(
            "--env-vars @FILE reads a file of the machine it runs on; over the API, send KEY=VALUE,…",
        ));
    }
    let text = match spec.strip_prefix('@') {
        Some(path) => read_small(path).map_err(|e| refused(format!("--env-vars @{path}: {e}")))?,
        None => spec.split(',').collect::<Vec<_>>().join("\n"),
    };
    let mut out = String::new();
    let entries = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    for (n, line) in entries.enumerate() {
        // The entry itself is not echoed: it may be a value.
        let Some((k, v)) = line.split_once('=') else {
            return Err(refused(format!(
                "--env-vars: entry {} is not KEY=VALUE",
                n + 1
            )));
        };
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(refused(format!("--env-vars: `{k}` is not a variable name")));
        }
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}
