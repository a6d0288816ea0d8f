//! The checks before spending: every target node's configuration, staged and
//! rendered as the config step would, before a run exists and before any
//! server is created.
//!
//! For each node, with stand-ins for the addresses not known yet (its own
//! address, its overlay address, the control nodes': documentation addresses
//! from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 10.100.0.0/16,
//! never dialled):
//! - every `[%%key%%]` without a value is reported, per file;
//! - every `.nix` file of the staged tree must parse (`nix-instantiate
//!   --parse`; where it is not installed, the report says so once, as a
//!   warning, and nothing fails for it);
//! - every secret it references (`/root/secrets/<name>`) must be in the
//!   cluster's secret store.
//!
//! Problems are reported per node and per file of the cluster repo
//! (`node_types/cluster_node.nix`, `nodes/worker1.nix`, …), all at once.
//! `Request::check` refuses with [`Report::refusal`]; `nix-infra check` prints the
//! [`Report`] itself.

mod dart;
mod parse;
pub mod targets;
#[cfg(test)]
mod tests;

pub use targets::check_repo;

use crate::cluster::{Cluster, ClusterError};
use crate::domain::{NodeName, Role};
use crate::node::{NodeInput, NodesInput, Peers, Reach, node_vars, staged_source};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One problem of a node's configuration, in one file of the cluster repo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The repo's file (`nodes/worker1.nix`), or what is missing.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

/// What the checks found for one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// The node.
    pub node: NodeName,
    /// The role it was checked as.
    pub role: Role,
    /// Its problems; none means it would deploy.
    pub problems: Vec<Problem>,
}

/// What the checks found for every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Each node checked, in the order given.
    pub nodes: Vec<NodeReport>,
    /// What could not be checked (no `nix-instantiate`), said once.
    pub warnings: Vec<String>,
    /// The repo's layout, as a sentence (see [`layout`]).
    pub layout: String,
}

/// Which layout the repo at `dir` is in, and how to tell.
pub fn layout(dir: &Path) -> String {
    if crate::node::is_dart_layout(dir) {
        "Dart nix-infra layout (the repo's root has configuration.nix: it is uploaded with the \
         node type, nodes/<node>.nix, modules/ and app_modules/ as the Dart tool does)"
            .into()
    } else {
        "nix-infra layout (no configuration.nix at the repo's root: nix-infra writes it, \
         importing the node type and nodes/<node>.nix)"
            .into()
    }
}

/// What stands in for the value of a placeholder nix-infra does not know.
// `null` is an expression wherever one may stand, and inside a string it is
// just text, so a stand-in never adds a problem of its own (an identifier
// would: `nix-instantiate --parse` reports undefined variables).
const UNKNOWN: &str = "null";

impl Report {
    /// Whether no node has a problem.
    pub fn ok(&self) -> bool {
        self.nodes.iter().all(|n| n.problems.is_empty())
    }

    /// Every problem, grouped per node (nodes with the same problems share
    /// one heading) and file; `None` when there is none.
    pub fn refusal(&self) -> Option<ClusterError> {
        if self.ok() {
            return None;
        }
        let mut groups: Vec<(Vec<&str>, &[Problem])> = Vec::new();
        for n in self.nodes.iter().filter(|n| !n.problems.is_empty()) {
            match groups.iter_mut().find(|(_, p)| *p == n.problems.as_slice()) {
                Some((names, _)) => names.push(n.node.as_str()),
                None => groups.push((vec![n.node.as_str()], &n.problems)),
            }
        }
        let bad = self.nodes.iter().filter(|n| !n.problems.is_empty()).count();
        let mut text = format!(
            "the configuration of {bad} of {} nodes would not deploy; nothing was started \
             (`nix-infra check` repeats these checks):",
            self.nodes.len()
        );
        for (names, problems) in groups {
            text.push_str(&format!("\n  {}:", names.join(", ")));
            for p in problems {
                text.push_str(&format!("\n    {}: {}", p.file, p.problem));
            }
        }
        Some(ClusterError::Refused(text))
    }
}

/// Checks the configuration of every node of `i` (see the module docs).
/// Blocking: it reads files and runs `nix-instantiate`.
pub fn check(c: &Cluster, i: &NodesInput) -> Report {
    let mut report = Report {
        layout: layout(&c.dir),
        ..Report::default()
    };
    let reach = Reach::read(c, &i.channel);
    let store = c.secrets();
    let mut trees = Vec::new();
    let dart = crate::node::is_dart_layout(&c.dir);
    let overlay = crate::node::overlay_network(c).err();
    for (k, n) in i.nodes.iter().enumerate() {
        let mut problems = Vec::new();
        let staged = match &reach {
            Ok(reach) if dart => {
                let repo = dart::Repo {
                    c,
                    i,
                    reach,
                    store: &store,
                };
                dart::stage(&repo, n, k, &mut problems, &mut report.warnings)
            }
            Ok(reach) => stage(c, i, n, k, reach, &mut problems).map(|t| {
                let refs = native_references(t.path(), n);
                (t, refs)
            }),
            Err(e) => {
                problems.push(problem("keys/id_ed25519.pub", e.clone()));
                None
            }
        };
        if let (Some(e), false) = (&overlay, n.is_ctrl() || n.is_fleet()) {
            problems.push(problem("(overlay network)", e.clone()));
        }
        let tree = staged.map(|(t, refs)| {
            problems.extend(secrets(&store, &refs));
            t
        });
        trees.push(tree);
        report.nodes.push(NodeReport {
            node: n.name.clone(),
            role: n.role,
            problems,
        });
    }
    match parse_trees(i, &trees, dart) {
        Ok(found) => {
            for (k, p) in found {
                report.nodes[k].problems.push(p);
            }
        }
        Err(warning) => report.warnings.push(warning),
    }
    for n in &mut report.nodes {
        n.problems.sort();
        n.problems.dedup();
    }
    report.warnings.sort();
    report.warnings.dedup();
    report
}

/// [`check`] off the async runtime; a refusal naming every problem, and
/// the warnings printed once per process.
pub async fn refuse_problems(c: &Cluster, i: &NodesInput) -> Result<(), ClusterError> {
    if i.nodes.is_empty() {
        return Ok(());
    }
    let (c, i) = (c.clone(), i.clone());
    let report = tokio::task::spawn_blocking(move || check(&c, &i))
        .await
        .map_err(|e| ClusterError::Unavailable(format!("the checks before the run: {e}")))?;
    static WARNED: std::sync::Once = std::sync::Once::new();
    if !report.warnings.is_empty() {
        WARNED.call_once(|| {
            for w in &report.warnings {
                tracing::warn!("{w}");
                eprintln!("warning: {w}");
            }
        });
    }
    match report.refusal() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn problem(file: impl Into<String>, problem: impl Into<String>) -> Problem {
    Problem {
        file: file.into(),
        problem: problem.into(),
    }
}

/// A documentation address (RFC 5737) for the `k`th node of a check.
fn stand_in_ip(k: usize) -> String {
    let nets = ["192.0.2", "198.51.100", "203.0.113"];
    let k = k % (nets.len() * 254);
    format!("{}.{}", nets[k / 254], k % 254 + 1)
}

/// What stands in for a node's peers: the checked control nodes (or one
/// stand-in control node outside the check), and an overlay address.
fn stand_in_peers(i: &NodesInput, n: &NodeInput, k: usize) -> Peers {
    let mut ctrl: Vec<(String, String)> = i
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_ctrl())
        .map(|(j, m)| (m.name.to_string(), stand_in_ip(j)))
        .collect();
    if ctrl.is_empty() {
        ctrl.push(("ctrl1".into(), "203.0.113.254".into()));
    }
    match n.role {
        Role::Ctrl => Peers::Ctrl(ctrl),
        Role::Fleet => Peers::Fleet,
        Role::Cluster | Role::Ingress => Peers::Overlay {
            overlay_ip: format!("10.100.{}.0", k % 254 + 1),
            endpoints: ctrl
                .iter()
                .map(|(_, ip)| format!("https://{ip}:2379"))
                .collect(),
        },
    }
}

/// Node `n`'s staged and rendered tree (unknown placeholders filled with a
/// stand-in, so the files can still be parsed), its problems so far added to `problems`.
fn stage(
    c: &Cluster,
    i: &NodesInput,
    n: &NodeInput,
    k: usize,
    reach: &Reach,
    problems: &mut Vec<Problem>,
) -> Option<tempfile::TempDir> {
    let node_type = n.role.node_type_file_in(&c.dir);
    if !c.dir.join(&node_type).exists() {
        problems.push(problem(
            node_type,
            "missing: a node of this role needs it (`nix-infra init --example` writes one)",
        ));
        return None;
    }
    let staged =
        match crate::node::stage_files(&c.dir, &i.nodes_dir(), n.name.as_str(), n.role, reach) {
            Ok(s) => s,
            Err(e) => {
                problems.push(problem("(staging /etc/nixos)", e));
                return None;
            }
        };
    let mut vars = node_vars(i, n, &stand_in_ip(k), stand_in_peers(i, n, k));
    match tasks::nixos::render_tree(staged.path(), &vars) {
        Ok(t) => return Some(t),
        Err(tasks::nixos::BootstrapError::MissingKeys(missing)) => {
            for (file, keys) in missing {
                let shown: Vec<String> = keys.iter().map(|k| format!("[%%{k}%%]")).collect();
                let what = if shown.len() == 1 {
                    "unknown placeholder"
                } else {
                    "unknown placeholders"
                };
                let source = staged_source(&file, n.name.as_str(), n.role);
                problems.push(problem(source, format!("{what} {}", shown.join(", "))));
                vars.extend(keys.into_iter().map(|k| (k, UNKNOWN.to_string())));
            }
        }
        Err(e) => {
            problems.push(problem("(rendering /etc/nixos)", e.to_string()));
            return None;
        }
    }
    match tasks::nixos::render_tree(staged.path(), &vars) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(problem("(rendering /etc/nixos)", e.to_string()));
            None
        }
    }
}

/// The secrets a staged tree in nix-infra's layout references, each with the
/// repo files that name it.
fn native_references(tree: &Path, n: &NodeInput) -> BTreeMap<String, BTreeSet<String>> {
    crate::node::secret_references(tree)
        .into_iter()
        .map(|(name, files)| {
            let files = files
                .iter()
                .map(|f| staged_source(f, n.name.as_str(), n.role))
                .collect();
            (name, files)
        })
        .collect()
}

/// The secrets of `refs` (name → the repo files naming it) that the store does not hold.
fn secrets(
    store: &Result<tasks::secrets::SecretStore, ClusterError>,
    refs: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, files) in refs {
        let stored = match store {
            Ok(s) => s.info(name).map(|i| i.current.is_some()),
            Err(e) => {
                out.push(problem(
                    "secrets/",
                    format!("cannot open the secret store: {e}"),
                ));
                return out;
            }
        };
        let flat = store.as_ref().is_ok_and(|s| s.dir().join(name).is_file());
        let why = match stored {
            Ok(true) => continue,
            _ if flat => format!(
                "references /root/secrets/{name}, which is a Dart nix-infra secret (secrets/{name}, \
                 base64, not encrypted): move it into the age store with `nix-infra secrets import`"
            ),
            Ok(false) => format!(
                "references /root/secrets/{name}, which is not in the secret store \
                 (`nix-infra secrets store --name {name}`)"
            ),
            Err(e) => format!("references /root/secrets/{name}: {e}"),
        };
        for f in files {
            out.push(problem(f.clone(), why.clone()));
        }
    }
    out
}

/// Parse problems of every `.nix` file of every tree, as (node index,
/// problem); each distinct text is parsed once. `Err` is the warning when
/// `nix-instantiate` is not installed.
fn parse_trees(
    i: &NodesInput,
    trees: &[Option<tempfile::TempDir>],
    dart: bool,
) -> Result<Vec<(usize, Problem)>, String> {
    let mut texts: Vec<String> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut uses: Vec<(usize, String, usize)> = Vec::new();
    for (k, tree) in trees.iter().enumerate() {
        let Some(tree) = tree else { continue };
        for path in parse::nix_files(tree.path()) {
            let rel = path.strip_prefix(tree.path()).unwrap_or(&path);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let next = texts.len();
            let t = *index.entry(text.clone()).or_insert(next);
            if t == next {
                texts.push(text);
            }
            uses.push((k, rel.display().to_string(), t));
        }
    }
    let results = parse::parse_all(&texts)?;
    let mut out = Vec::new();
    for (k, rel, t) in uses {
        if let Some(e) = &results[t] {
            let n = &i.nodes[k];
            let source = if dart {
                crate::node::dart_staged_source(&i.dir, &rel, n.name.as_str(), n.role)
            } else {
                staged_source(&rel, n.name.as_str(), n.role)
            };
            out.push((k, problem(source, format!("does not parse: {e}"))));
        }
    }
    Ok(out)
}
