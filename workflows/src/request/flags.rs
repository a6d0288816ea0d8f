//! What the Dart nix-infra's flags mean here: `--node-module` (a node type
//! file, hence a role), `--ctrl-nodes` (the control nodes, as CTRL_NODES),
//! `--cluster-uuid` (etcd's cluster token, as CLUSTER_UUID).

use super::node::{existing_as, node, targets};
use super::{Request, args_json, canonical, refused};
use crate::cluster::{Cluster, ClusterError, Setting};
use crate::domain::{NodeName, ROLES, Role};
use crate::node::NodeInput;
use crate::node::NodesInput;
use crate::node::args::{UpdateArgs, UploadArgs};

/// The role whose node type file a Dart `--node-module` names
/// (`node_types/cluster_node.nix` → cluster, `node_types/ingress_node.nix`
/// → ingress, `node_types/control_node.nix` → ctrl,
/// `node_types/fleet_node.nix` → fleet). nix-infra takes a node's type
/// from its role, so any other file is refused, saying so.
pub fn node_module(path: &str) -> Result<Role, String> {
    let p = path.trim().trim_start_matches("./");
    if let Some(r) = ROLES.into_iter().find(|r| r.node_type_file() == p) {
        return Ok(r);
    }
    if p == crate::domain::STANDALONE_MACHINE {
        return Ok(Role::Fleet);
    }
    let files: Vec<String> = ROLES.into_iter().map(Role::node_type_file).collect();
    Err(format!(
        "`{path}` is not a node type nix-infra deploys: a node's type follows its role, \
         one of {}; rename the file to the one of the role (e.g. `git mv {p} {}`)",
        files.join(", "),
        Role::Fleet.node_type_file()
    ))
}

/// `--cluster-uuid`: etcd's cluster token, rendered into a Nix string, so
/// letters, digits, `.`, `_` and `-` only.
fn cluster_token(v: &str) -> Result<String, ClusterError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(refused(format!(
            "--cluster-uuid `{v}`: give letters, digits, `.`, `_` and `-` only (a UUID fits)"
        )))
    }
}

/// The control nodes a command names (`--ctrl-nodes "a b"`), checked.
fn ctrl_list(v: &str) -> Result<Vec<NodeName>, ClusterError> {
    let nodes = NodeName::list(v).map_err(|e| refused(format!("--ctrl-nodes: {e}")))?;
    if nodes.is_empty() {
        return Err(refused("--ctrl-nodes names no node"));
    }
    Ok(nodes)
}

/// `c` with CTRL_NODES set to `nodes` for this command.
fn with_ctrl_nodes(c: &Cluster, nodes: &[NodeName]) -> Cluster {
    let names: Vec<&str> = nodes.iter().map(NodeName::as_str).collect();
    c.clone().with_setting(Setting::CtrlNodes, &names.join(" "))
}

/// CTRL_NODES as `c` reads it (settings, environment, env file): names
/// separated by spaces or commas.
pub(super) fn ctrl_var(c: &Cluster) -> Vec<String> {
    c.var(Setting::CtrlNodes.key())
        .unwrap_or_default()
        .split(|ch: char| ch == ',' || ch.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Refuses `--ctrl-nodes` naming a node that is not a control node of the
/// cluster: on a cloud a node's role is its label (`init-ctrl` sets it);
/// a `servers.yaml` server without a role is one because CTRL_NODES names it.
async fn check_ctrl_nodes(c: &Cluster, nodes: &[NodeName]) -> Result<(), ClusterError> {
    let inv = c.inventory().await?;
    for n in nodes {
        match inv.nodes.get(n) {
            Some(Role::Ctrl) => {}
            Some(r) => {
                return Err(refused(format!(
                    "--ctrl-nodes names {n}, a {r} node (`nix-infra cluster init-ctrl --target {n}` makes it a control node)"
                )));
            }
            None if inv.unassigned.contains(n) => {}
            None => {
                return Err(refused(format!(
                    "--ctrl-nodes names {n}, but cluster {} has no server of that name",
                    c.name
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a node whose role is not the node type the command deploys.
fn same_type(n: &NodeName, has: Role, wants: Role) -> Result<(), ClusterError> {
    if has == wants {
        return Ok(());
    }
    Err(refused(format!(
        "--node-module {}: {n} is a {has} node, whose node type is {} (a node's type follows its role)",
        wants.node_type_file(),
        has.node_type_file()
    )))
}

/// `c` with the settings the request gives on its command line:
/// `--ctrl-nodes` (CTRL_NODES), `--cluster-uuid` (CLUSTER_UUID), and for
/// `init-ctrl` on listed machines its targets among CTRL_NODES (a
/// `servers.yaml` server without a role is a control node so).
pub(super) fn with_settings(r: &Request, c: &Cluster) -> Result<Cluster, ClusterError> {
    use Request::*;
    let mut c = c.clone();
    match r {
        Adopt {
            ctrl_nodes: Some(v),
            ..
        }
        | InitNode {
            ctrl_nodes: Some(v),
            ..
        }
        | UpdateNode {
            ctrl_nodes: Some(v),
            ..
        }
        | Destroy {
            ctrl_nodes: Some(v),
            ..
        } => c = with_ctrl_nodes(&c, &ctrl_list(v)?),
        InitCtrl { target, .. } if c.is_self_hosted() => {
            let mut all = ctrl_var(&c);
            for n in targets(target)? {
                if !all.iter().any(|m| m == n.as_str()) {
                    all.push(n.to_string());
                }
            }
            c = c.with_setting(Setting::CtrlNodes, &all.join(" "));
        }
        _ => {}
    }
    if let InitCtrl {
        cluster_uuid: Some(v),
        ..
    }
    | UpdateCtrl {
        cluster_uuid: Some(v),
        ..
    } = r
    {
        c = c.with_setting(Setting::ClusterUuid, &cluster_token(v)?);
    }
    Ok(c)
}

/// The nodes `init-ctrl` makes control nodes: control nodes, and cluster
/// nodes of a cloud not registered as cluster nodes, which are labelled as
/// control nodes first (the Dart tool's scripts provision every node alike,
/// then init some as control nodes).
pub(super) async fn ctrl_targets(
    c: &Cluster,
    target: &str,
) -> Result<Vec<NodeInput>, ClusterError> {
    let mut out = Vec::new();
    let in_use = |n: &NodeName| {
        refused(format!(
            "{n} is a cluster node, not a control node; use `cluster init-node`"
        ))
    };
    for (n, r) in existing_as(c, target, false, Some(Role::Ctrl)).await? {
        let mut x = node(&n, Role::Ctrl);
        match r {
            Role::Ctrl => {}
            Role::Cluster if !c.is_self_hosted() => x.relabel = true,
            Role::Cluster => return Err(in_use(&n)),
            other => {
                return Err(refused(format!(
                    "{n} is a {other} node, not a control node; use `cluster init-node`"
                )));
            }
        }
        out.push(x);
    }
    let has_ctrl = c.inventory().await?.nodes.values().any(|r| r.is_ctrl());
    if has_ctrl && out.iter().any(|n| n.relabel) {
        // A registered cluster node is in use as one: not made a control node.
        let reg = crate::node::open_registry(&NodesInput::of(c))
            .await
            .map_err(|e| ClusterError::Unavailable(format!("the registry: {}", e.message)))?;
        let registered = reg
            .nodes()
            .await
            .map_err(|e| ClusterError::Unavailable(format!("the registry: {e}")))?;
        if let Some(n) = out
            .iter()
            .find(|n| n.relabel && registered.iter().any(|r| r.name == n.name.as_str()))
        {
            return Err(in_use(&n.name));
        }
    }
    Ok(out)
}

/// Refuses `--ctrl-nodes` naming a node that is no control node.
pub(super) async fn known_ctrl_nodes(
    c: &Cluster,
    ctrl_nodes: Option<&str>,
) -> Result<(), ClusterError> {
    match ctrl_nodes {
        Some(v) => check_ctrl_nodes(c, &ctrl_list(v)?).await,
        None => Ok(()),
    }
}

/// [`existing`], each of the node type `node_type` (`--node-module`) if given.
pub(super) async fn typed(
    c: &Cluster,
    target: &str,
    fleet: bool,
    node_type: Option<Role>,
) -> Result<Vec<(NodeName, Role)>, ClusterError> {
    let list = existing_as(c, target, fleet, node_type).await?;
    if let Some(t) = node_type {
        for (n, r) in &list {
            same_type(n, *r, t)?;
        }
    }
    Ok(list)
}

/// `node.update` without the rebuild when `rebuild` is false (`--no-rebuild`).
pub(super) fn upload_only(i: &mut NodesInput, rebuild: bool) {
    if !rebuild {
        i.args = args_json(&UpdateArgs { rebuild: false });
    }
}

/// What `upload` copies: `src` to `dst`, or each of `files` into the folder
/// `remote_path` (default `/root/uploads`) under its own name, as the Dart tool does.
pub(super) fn upload_args(
    src: Option<std::path::PathBuf>,
    dst: Option<String>,
    files: Vec<std::path::PathBuf>,
    remote_path: Option<String>,
) -> Result<UploadArgs, ClusterError> {
    let absolute = |flag: &str, p: &str| match p.starts_with('/') {
        true => Ok(()),
        false => Err(refused(format!(
            "{flag} {p}: give an absolute path on the node"
        ))),
    };
    let mut copies = Vec::new();
    match (src, dst, files.is_empty()) {
        (Some(src), Some(dst), true) if remote_path.is_none() => {
            absolute("--dst", &dst)?;
            copies.push((canonical(&src, "--src")?, dst));
        }
        (None, None, false) => {
            let into = remote_path.unwrap_or_else(|| "/root/uploads".into());
            absolute("--remote-path", &into)?;
            for f in files {
                let src = canonical(&f, "--file")?;
                let name = src.file_name().map(|n| n.to_string_lossy().to_string());
                let name =
                    name.ok_or_else(|| refused(format!("--file {}: no file name", f.display())))?;
                copies.push((src, format!("{}/{name}", into.trim_end_matches('/'))));
            }
        }
        _ => {
            return Err(refused(
                "give --src and --dst, or --file (with --remote-path, default /root/uploads)",
            ));
        }
    }
    let (src, dst) = copies.remove(0);
    Ok(UploadArgs {
        src,
        dst,
        more: copies
            .into_iter()
            .map(|(src, dst)| crate::node::args::Copy { src, dst })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_modules_name_roles_and_other_files_are_refused() {
        assert_eq!(
            node_module("node_types/cluster_node.nix"),
            Ok(Role::Cluster)
        );
        assert_eq!(
            node_module("./node_types/ingress_node.nix"),
            Ok(Role::Ingress)
        );
        assert_eq!(node_module("node_types/control_node.nix"), Ok(Role::Ctrl));
        assert_eq!(node_module("node_types/fleet_node.nix"), Ok(Role::Fleet));
        assert_eq!(
            node_module("node_types/standalone_machine.nix"),
            Ok(Role::Fleet),
            "the Dart machine template's"
        );
        let e = node_module("node_types/my_box.nix").unwrap_err();
        assert!(
            e.contains("a node's type follows its role")
                && e.contains("git mv node_types/my_box.nix node_types/fleet_node.nix"),
            "{e}"
        );
    }

    #[test]
    fn cluster_tokens_are_plain_words() {
        assert!(cluster_token("d6b76143-bcfa-490a-8f38-91d79be62fab").is_ok());
        assert!(cluster_token("my-cluster-01").is_ok());
        assert!(cluster_token("a\"b").is_err());
        assert!(cluster_token("").is_err());
    }
}
