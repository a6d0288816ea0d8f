//! `/etc/nixos` staged locally for a node: a generated `configuration.nix`
//! importing what the install left, the node type, `nodes/<node>.nix`,
//! `modules/` and the node's own `app_modules/`, with every `[%%key%%]` filled.

use super::reach::Reach;
use crate::domain::Role;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The node type file of `role`, relative to the cluster directory
/// ([`Role::node_type_file`]; a name that is no role maps to `node_types/<name>_node.nix`).
pub fn node_type_file(role: &str) -> String {
    match role.parse::<Role>() {
        Ok(r) => r.node_type_file(),
        Err(_) => format!("node_types/{role}_node.nix"),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// Names of the secrets a staged tree references as `/root/secrets/<name>`
/// (it holds only the apps the node runs, see [`stage_config`]).
pub fn referenced_secrets(root: &Path) -> BTreeSet<String> {
    secret_references(root).into_keys().collect()
}

/// The secrets a staged tree references, each with the files (relative to
/// `root`) that name it.
pub fn secret_references(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            for (pos, _) in text.match_indices("/root/secrets/") {
                let name: String = text[pos + 14..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .collect();
                if !name.is_empty() {
                    out.entry(name).or_default().insert(rel.clone());
                }
            }
        }
    }
    out
}

/// The apps of `app_modules/` that a node file names (`app_modules/<app>`).
pub fn node_apps(dir: &Path, node_file: &str) -> Vec<String> {
    let mut apps: Vec<String> = std::fs::read_dir(dir.join("app_modules"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|app| {
            let needle = format!("app_modules/{app}");
            node_file.match_indices(&needle).any(|(at, _)| {
                let next = node_file[at + needle.len()..].chars().next();
                !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
        .collect();
    apps.sort();
    apps
}

/// Stages `/etc/nixos` for a node, rendered: [`stage_files`], then every
/// `[%%key%%]` filled from `vars` (every missing one reported, per file).
pub fn stage_config(
    dir: &Path,
    nodes: &Path,
    node: &str,
    role: Role,
    vars: &BTreeMap<String, String>,
    reach: &Reach,
) -> Result<tempfile::TempDir, String> {
    let staged = stage_files(dir, nodes, node, role, reach)?;
    let rendered = tasks::nixos::render_tree(staged.path(), vars).map_err(|e| e.to_string())?;
    Ok(rendered)
}

/// Stages `/etc/nixos` for a node, placeholders as they are: a generated
/// `configuration.nix` ([`super::reach::configuration`]) importing the node
/// type, `nodes/<node>.nix`, `modules/` and the node's own `app_modules/`.
pub fn stage_files(
    dir: &Path,
    nodes: &Path,
    node: &str,
    role: Role,
    reach: &Reach,
) -> Result<tempfile::TempDir, String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    let s = staging.path();
    let node_type = dir.join(role.node_type_file_in(dir));
    std::fs::copy(&node_type, s.join("node_type.nix")).map_err(|e| io(&node_type, e))?;
    let own = nodes.join(format!("{node}.nix"));
    let mut imports = vec!["./node_type.nix"];
    if own.exists() {
        std::fs::copy(&own, s.join("node.nix")).map_err(|e| io(&own, e))?;
        imports.push("./node.nix");
    }
    let modules = dir.join("modules");
    if modules.is_dir() {
        copy_tree(&modules, &s.join("modules")).map_err(|e| io(&modules, e))?;
    }
    // Only the apps the node runs: those its nodes/<node>.nix names.
    let own_text = std::fs::read_to_string(&own).unwrap_or_default();
    for app in node_apps(dir, &own_text) {
        let from = dir.join("app_modules").join(&app);
        copy_tree(&from, &s.join("app_modules").join(&app)).map_err(|e| io(&from, e))?;
    }
    let configuration = super::reach::configuration(node, role, &imports, reach);
    std::fs::write(s.join("configuration.nix"), configuration).map_err(|e| e.to_string())?;
    Ok(staging)
}

/// The file of the cluster repo a staged file comes from: `node_type.nix`
/// is the role's node type, `node.nix` is `nodes/<node>.nix`, the generated
/// `configuration.nix` is nix-infra's own; the rest keep their paths.
pub fn staged_source(staged: &str, node: &str, role: Role) -> String {
    match staged {
        "node_type.nix" => role.node_type_file(),
        "node.nix" => format!("nodes/{node}.nix"),
        "configuration.nix" => "configuration.nix (generated by nix-infra)".into(),
        other => other.to_string(),
    }
}

/// Where a node's configuration says its peers are.
pub(crate) enum Peers {
    /// A control node: the etcd cluster's members, (name, ip).
    Ctrl(Vec<(String, String)>),
    /// A cluster or ingress node: its overlay address and etcd's client URLs.
    Overlay {
        /// `[%%overlayIp%%]`.
        overlay_ip: String,
        /// `[%%etcdEndpoints%%]`.
        endpoints: Vec<String>,
    },
    /// A fleet node: outside the overlay and the registry.
    Fleet,
}

/// The `[%%key%%]` values of node `n`'s configuration, at `local_ip` with
/// `peers`: the one list of keys both the config step and the checks before
/// a run fill (see `crate::preflight`).
pub(crate) fn node_vars(
    i: &super::NodesInput,
    n: &super::NodeInput,
    local_ip: &str,
    peers: Peers,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::from([
        ("clusterName".to_string(), i.cluster.clone()),
        ("nodeName".into(), n.name.to_string()),
        ("nodeRole".into(), n.role.to_string()),
        ("localIp".into(), local_ip.to_string()),
        ("overlayNetwork".into(), overlay_cidr(i)),
        ("certsDir".into(), super::NODE_CERTS.into()),
        ("serviceGroups".into(), n.service_groups().join(",")),
    ]);
    match peers {
        Peers::Ctrl(members) => {
            let cluster = members
                .iter()
                .map(|(name, ip)| format!("{name}=https://{ip}:2380"))
                .collect::<Vec<_>>()
                .join(",");
            vars.insert("etcdInitialCluster".into(), cluster);
            let endpoints = members
                .iter()
                .map(|(_, ip)| format!("https://{ip}:2379"))
                .collect::<Vec<_>>();
            vars.insert("etcdEndpoints".into(), endpoints.join(","));
        }
        Peers::Overlay {
            overlay_ip,
            endpoints,
        } => {
            vars.insert("overlayIp".into(), overlay_ip);
            vars.insert("etcdEndpoints".into(), endpoints.join(","));
        }
        Peers::Fleet => {}
    }
    vars
}

/// The cluster's overlay network as `a.b.c.d/n` (the default if the repo's
/// cannot be read: the ctrl step refuses that case, naming why).
fn overlay_cidr(i: &super::NodesInput) -> String {
    i.repo()
        .ok()
        .and_then(|c| super::overlay_network(&c).ok())
        .unwrap_or_default()
        .cidr()
}
