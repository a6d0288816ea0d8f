//! The checks before a run for a repo in the Dart layout: each node's
//! `/etc/nixos` staged as `config/<node>` would stage it, with stand-ins for
//! the addresses not known yet.

use super::{Peers, Problem, UNKNOWN, problem, stand_in_ip, stand_in_peers};
use crate::cluster::{Cluster, ClusterError};
use crate::domain::NodeName;
use crate::node::{DartValues, NodeInput, NodesInput, Reach};
use std::collections::{BTreeMap, BTreeSet};
use tasks::secrets::SecretStore;

/// What every node's check reads.
pub(super) struct Repo<'a> {
    /// The repo.
    pub c: &'a Cluster,
    /// The run's input.
    pub i: &'a NodesInput,
    /// The key and release the configuration keeps.
    pub reach: &'a Reach,
    /// The secret store, if it opens.
    pub store: &'a Result<SecretStore, ClusterError>,
}

/// A node's staged tree (unknown placeholders filled with a stand-in, so it
/// can be parsed) and the secrets it names; its problems so far go to `problems`.
pub(super) fn stage(
    repo: &Repo,
    n: &NodeInput,
    k: usize,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<(tempfile::TempDir, BTreeMap<String, BTreeSet<String>>)> {
    let Repo { c, i, reach, store } = repo;
    let values = match stand_in_values(i, n, k, reach, store.as_ref().ok()) {
        Ok(v) => v,
        Err(e) => {
            problems.push(problem("secrets/", e));
            return None;
        }
    };
    let staged = match crate::node::dart::stage(
        &c.dir,
        &i.nodes_dir(),
        n.name.as_str(),
        n.role,
        &values,
        Some(UNKNOWN),
    ) {
        Ok(s) => s,
        Err(e) => {
            problems.push(problem("(staging /etc/nixos)", e));
            return None;
        }
    };
    for (file, keys) in &staged.missing {
        for k in keys.iter().filter(|k| known_at_run_time(k)) {
            let node = k.rsplit_once('.').map_or("", |(n, _)| n);
            if !i.nodes_dir().join(format!("{node}.nix")).exists() {
                warnings.push(format!(
                    "{file}: [%%{k}%%] names `{node}`, which is not in this run and has no \
                     nodes/{node}.nix: the run refuses it unless the cluster has that server"
                ));
            }
        }
        let shown: Vec<String> = keys
            .iter()
            .filter(|k| !known_at_run_time(k))
            .map(|k| format!("[%%{k}%%]"))
            .collect();
        let what = match shown.len() {
            0 => continue,
            1 => "unknown placeholder",
            _ => "unknown placeholders",
        };
        problems.push(problem(
            file.clone(),
            format!("{what} {}", shown.join(", ")),
        ));
    }
    warnings.extend(reach_warnings(c));
    Some((staged.tree, staged.secrets))
}

/// In the Dart layout the repo's own `configuration.nix` is the root, so
/// nix-infra adds nothing that keeps a node reachable: say what it lacks.
fn reach_warnings(c: &Cluster) -> Vec<String> {
    let text = std::fs::read_to_string(c.dir.join("configuration.nix")).unwrap_or_default();
    [
        (
            "hardware-configuration.nix",
            "does not import ./hardware-configuration.nix (the install's)",
        ),
        (
            "[%%sshKey%%]",
            "does not give root the key nix-infra logs in with ([%%sshKey%%])",
        ),
        ("openssh", "does not turn on sshd (services.openssh)"),
    ]
    .into_iter()
    .filter(|(needle, _)| !text.contains(needle))
    .map(|(_, what)| {
        format!("configuration.nix {what}: after the rebuild nix-infra may not reach the node")
    })
    .collect()
}

/// `<node>.ipv4` and `<node>.overlayIp` of a node outside the run: only the
/// run knows whether that server (and its lease) exists; its config step
/// refuses the key if not.
fn known_at_run_time(key: &str) -> bool {
    let Some((node, what)) = key.rsplit_once('.') else {
        return false;
    };
    matches!(what, "ipv4" | "overlayIp") && node != "localhost" && NodeName::new(node).is_ok()
}

/// The values `config/<node>` would use, the run's addresses stood in for.
fn stand_in_values(
    i: &NodesInput,
    n: &NodeInput,
    k: usize,
    reach: &Reach,
    store: Option<&SecretStore>,
) -> Result<DartValues, String> {
    let mut node = crate::node::base_node_values(n.name.as_str(), store)?;
    node.insert("localhost.ipv4".into(), stand_in_ip(k));
    for (j, m) in i.nodes.iter().enumerate() {
        node.insert(format!("{}.ipv4", m.name), stand_in_ip(j));
        if !m.is_ctrl() && !m.is_fleet() {
            node.insert(format!("{}.overlayIp", m.name), stand_in_overlay(j));
        }
    }
    if !n.is_ctrl() && !n.is_fleet() {
        node.insert("localhost.overlayIp".into(), stand_in_overlay(k));
    }
    let members = match stand_in_peers(i, n, k) {
        Peers::Ctrl(m) => m,
        _ => match stand_in_peers(i, &ctrl_like(n), k) {
            Peers::Ctrl(m) => m,
            _ => Vec::new(),
        },
    };
    Ok(DartValues {
        ssh_key: reach.root_key.clone(),
        node_name: n.name.to_string(),
        nix_version: reach.state_version.clone(),
        etcd_cluster: crate::node::dart::etcd_cluster(&members),
        etcd_cluster_token: crate::node::cluster_token(i),
        node,
    })
}

/// A stand-in overlay address (10.255.0.0/16 is inside no network we reserve from first).
fn stand_in_overlay(k: usize) -> String {
    format!("10.255.{}.0", k % 254 + 1)
}

/// `n` as a control node, to ask [`stand_in_peers`] for the control members.
fn ctrl_like(n: &NodeInput) -> NodeInput {
    NodeInput {
        role: crate::domain::Role::Ctrl,
        ..n.clone()
    }
}
