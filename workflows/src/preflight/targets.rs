//! Which nodes `nix-infra check` checks, and as which role, without asking
//! a cloud: the checks run before anything exists, and offline.
//!
//! - The nodes: `--target`, else every `nodes/<node>.nix`, plus one node for
//!   each node type no such node uses (named as `cluster up` and `fleet
//!   provision` would name it: `ctrl1`, `worker1`, `ingress1`, `fleet1`).
//! - Their role: `--role` if given; else what `servers.yaml` says, for a repo
//!   that lists its machines; else by name, as `cluster up` names nodes
//!   (`ctrl…` control, `ingress…` ingress, `fleet…` fleet, others cluster).

use super::Report;
use crate::cluster::{Cluster, ClusterError};
use crate::domain::{NodeName, ROLES, Role};
use crate::node::{NodeInput, NodesInput};
use std::collections::BTreeMap;

/// The role a node called `name` gets from `cluster up`'s naming.
pub fn role_by_name(name: &str) -> Role {
    match () {
        _ if name.starts_with("ctrl") => Role::Ctrl,
        _ if name.starts_with("ingress") => Role::Ingress,
        _ if name.starts_with("fleet") => Role::Fleet,
        _ => Role::Cluster,
    }
}

/// The name of the stand-in node that checks `role`'s node type.
fn stand_in_name(role: Role, k: usize) -> String {
    let prefix = match role {
        Role::Ctrl => "ctrl",
        Role::Cluster => "worker",
        Role::Ingress => "ingress",
        Role::Fleet => "fleet",
    };
    format!("{prefix}{k}")
}

/// The nodes with a `nodes/<node>.nix`, sorted (files whose name is no node name are skipped).
fn node_files(c: &Cluster) -> Vec<NodeName> {
    let mut out: Vec<NodeName> = std::fs::read_dir(c.dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            NodeName::new(name.strip_suffix(".nix")?).ok()
        })
        .collect();
    out.sort();
    out
}

/// The nodes to check: `target`'s, or the defaults (see the module docs).
pub async fn nodes(
    c: &Cluster,
    target: Option<&str>,
    role: Option<Role>,
) -> Result<Vec<NodeInput>, ClusterError> {
    let listed: BTreeMap<NodeName, Role> = if c.is_self_hosted() {
        c.inventory().await?.nodes
    } else {
        BTreeMap::new()
    };
    let role_of = |n: &NodeName| {
        role.or_else(|| listed.get(n).copied())
            .unwrap_or_else(|| role_by_name(n.as_str()))
    };
    let names = match target {
        Some(t) => crate::request::targets(t)?,
        None => node_files(c),
    };
    let mut nodes: Vec<NodeInput> = names
        .into_iter()
        .map(|n| NodeInput {
            role: role_of(&n),
            name: n,
            groups: Vec::new(),
            relabel: false,
        })
        .collect();
    if target.is_none() {
        for r in ROLES {
            let covered = nodes.iter().any(|n| n.role == r);
            if covered || !c.dir.join(r.node_type_file_in(&c.dir)).exists() {
                continue;
            }
            let k = (1..)
                .find(|k| {
                    !nodes
                        .iter()
                        .any(|n| n.name.as_str() == stand_in_name(r, *k))
                })
                .unwrap_or(1);
            let name = NodeName::new(stand_in_name(r, k))
                .map_err(|e| ClusterError::Refused(e.to_string()))?;
            nodes.push(NodeInput {
                name,
                role: r,
                groups: Vec::new(),
                relabel: false,
            });
        }
    }
    if nodes.is_empty() {
        return Err(ClusterError::Refused(format!(
            "{} has no nodes/<node>.nix and no node types: nothing to check \
             (`nix-infra init --example` writes an example repo)",
            c.dir.display()
        )));
    }
    Ok(nodes)
}

/// `nix-infra check`: the checks before a run, on [`nodes`]; refused only
/// when the repo cannot be checked at all (not initialised, no nodes, a bad target).
pub async fn check_repo(
    c: &Cluster,
    target: Option<&str>,
    role: Option<Role>,
) -> Result<Report, ClusterError> {
    c.need_init()?;
    let i = NodesInput {
        nodes: nodes(c, target, role).await?,
        ..NodesInput::of(c)
    };
    let c = c.clone();
    tokio::task::spawn_blocking(move || super::check(&c, &i))
        .await
        .map_err(|e| ClusterError::Unavailable(format!("the checks: {e}")))
}
