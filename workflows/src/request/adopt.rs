//! Servers the provider has under a node's name but without nix-infra's
//! labels (made by the Dart nix-infra): refused with the `cluster adopt`
//! line that makes them nodes; and `deploy-apps --test-dir`'s folder.

use super::refused;
use crate::cluster::{Cluster, ClusterError};
use crate::domain::{NodeName, Role};

/// The refusal naming the `cluster adopt` line that makes `nodes` (servers
/// without nix-infra's labels) nodes of the cluster.
pub(super) fn adopt_first(c: &Cluster, nodes: &[String], fleet: bool) -> ClusterError {
    let kind = if fleet { "fleet" } else { "cluster" };
    let line = format!(
        "nix-infra -d {} {kind} adopt --target \"{}\"",
        shell_word(&c.dir.display().to_string()),
        nodes.join(" ")
    );
    ClusterError::Adoptable {
        nodes: nodes.to_vec(),
        fleet,
        message: format!(
            "{} exist at the provider without nix-infra's labels (made by the Dart nix-infra?): \
             adopt them first (control nodes from CTRL_NODES), then run this again:\n  {line}",
            nodes.join(", ")
        ),
    }
}

/// Refuses to create servers under names the provider already has for
/// servers without nix-infra's labels: they must be adopted, not shadowed.
pub(super) async fn refuse_unlabelled(
    c: &Cluster,
    list: &[(NodeName, Role)],
    fleet: bool,
) -> Result<(), ClusterError> {
    let names: Vec<NodeName> = list.iter().map(|(n, _)| n.clone()).collect();
    let adoptable = c.unlabelled(&names).await?;
    if adoptable.is_empty() {
        Ok(())
    } else {
        Err(adopt_first(c, &adoptable, fleet))
    }
}

/// `<test dir>/nodes`, the folder `deploy-apps --test-dir` takes the nodes'
/// own files from (relative to the repo, as the Dart tool takes it).
pub(super) fn test_nodes(
    c: &Cluster,
    test_dir: &std::path::Path,
) -> Result<std::path::PathBuf, ClusterError> {
    let dir = c.dir.join(test_dir);
    let nodes = dir.join("nodes");
    if !nodes.is_dir() {
        return Err(refused(format!(
            "--test-dir {}: it has no nodes/ folder with the nodes' own files",
            test_dir.display()
        )));
    }
    std::fs::canonicalize(&nodes)
        .map_err(|e| refused(format!("--test-dir {}: {e}", test_dir.display())))
}

/// `s` as one shell word.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
