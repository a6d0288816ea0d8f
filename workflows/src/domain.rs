//! The cluster's vocabulary: a node's [`Role`], its [`NodeName`] and the
//! [`ServiceGroup`]s it serves.
//!
//! Both are checked when they are made, so a value of either type is valid
//! everywhere: a run input that names a bad node or an unknown role does not
//! deserialize, and a planner never sees one. On the wire (run inputs, stored
//! plans, the HTTP API) both are plain strings, exactly as before they had types.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a node is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A control node: runs etcd, holds the registry.
    Ctrl,
    /// A cluster node: runs apps on the overlay, registered in etcd.
    Cluster,
    /// An ingress node: a cluster node that exposes apps to the outside.
    Ingress,
    /// A fleet node: NixOS managed by nix-infra, outside the overlay and registry.
    Fleet,
}

/// Every role, in the order users read them.
pub const ROLES: [Role; 4] = [Role::Ctrl, Role::Cluster, Role::Ingress, Role::Fleet];

impl Role {
    /// The role's name, as in labels and run inputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ctrl => "ctrl",
            Role::Cluster => "cluster",
            Role::Ingress => "ingress",
            Role::Fleet => "fleet",
        }
    }

    /// Whether the node runs etcd.
    pub fn is_ctrl(self) -> bool {
        self == Role::Ctrl
    }

    /// Whether the node is outside the overlay and the registry.
    pub fn is_fleet(self) -> bool {
        self == Role::Fleet
    }

    /// The node type file of the role, relative to the cluster directory
    /// (`node_types/control_node.nix` for control nodes).
    pub fn node_type_file(self) -> String {
        let kind = match self {
            Role::Ctrl => "control",
            other => other.as_str(),
        };
        format!("node_types/{kind}_node.nix")
    }

    /// [`Role::node_type_file`] in the repo at `dir`: a fleet node's type is
    /// `node_types/fleet_node.nix`, or the Dart machine template's
    /// `node_types/standalone_machine.nix` when the repo has only that.
    pub fn node_type_file_in(self, dir: &std::path::Path) -> String {
        let own = self.node_type_file();
        if self == Role::Fleet && !dir.join(&own).exists() && dir.join(STANDALONE_MACHINE).exists()
        {
            return STANDALONE_MACHINE.to_string();
        }
        own
    }
}

/// The Dart machine template's node type for its machines (fleet nodes).
pub const STANDALONE_MACHINE: &str = "node_types/standalone_machine.nix";

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role; roles are ctrl, cluster, ingress and fleet")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ROLES
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// A node's name: also its server's name and its hostname, so it follows
/// the hostname rules (lowercase letters, digits and `-`, at most 63, not
/// starting or ending with `-`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

/// A string that is not a node name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a node name (lowercase letters, digits and '-', at most 63)")]
pub struct BadNodeName(pub String);

impl NodeName {
    /// Checks `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, BadNodeName> {
        let n = name.into();
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if ok {
            Ok(NodeName(n))
        } else {
            Err(BadNodeName(n))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names of a space-separated list (`--target "a b"`), each checked.
    pub fn list(names: &str) -> Result<Vec<NodeName>, BadNodeName> {
        names.split_whitespace().map(NodeName::new).collect()
    }
}

impl TryFrom<String> for NodeName {
    type Error = BadNodeName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeName::new(s)
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl FromStr for NodeName {
    type Err = BadNodeName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service group a node serves: an entry of the `services` list of its
/// `/cluster/nodes/<node>`, which the templates' confd matches against
/// `/cluster/<group>/…` (`services`, `backends`, `frontends`). Letters,
/// digits, `-`, `_` and `.`: it becomes part of etcd keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceGroup(String);

/// A string that is not a service group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a service group (letters, digits, '-', '_' and '.')")]
pub struct BadServiceGroup(pub String);

impl ServiceGroup {
    /// The group a node serves when none is given: `services`, what the Dart
    /// templates pass (`SERVICE_GROUP=services` in their `cli`). The Dart tool
    /// itself has no default (it fails without `--service-group`).
    pub const DEFAULT: &'static str = "services";

    /// Checks `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, BadServiceGroup> {
        let n = name.into();
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(ServiceGroup(n))
        } else {
            Err(BadServiceGroup(n))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The groups of `--service-group` values: each value is split on spaces
    /// (as the Dart tool splits `--service-group "services backends"`) and
    /// commas, each word checked; a repeated group counts once, in first-seen order.
    pub fn list<S: AsRef<str>>(values: &[S]) -> Result<Vec<ServiceGroup>, BadServiceGroup> {
        let mut out: Vec<ServiceGroup> = Vec::new();
        let words = values
            .iter()
            .flat_map(|v| v.as_ref().split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|w| !w.is_empty());
        for w in words {
            let g = ServiceGroup::new(w)?;
            if !out.contains(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for ServiceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ServiceGroup> for String {
    fn from(g: ServiceGroup) -> String {
        g.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_groups_split_on_spaces_and_commas_and_are_checked() {
        let names = |v: &[&str]| -> Vec<String> {
            ServiceGroup::list(v)
                .unwrap()
                .into_iter()
                .map(String::from)
                .collect()
        };
        assert_eq!(names(&["services backends"]), ["services", "backends"]);
        assert_eq!(names(&["web,db", "cache"]), ["web", "db", "cache"]);
        assert_eq!(names(&[" web  web,", "db"]), ["web", "db"]);
        assert!(names(&[]).is_empty());
        let e = ServiceGroup::list(&["web", "a/b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`a/b` is not a service group (letters, digits, '-', '_' and '.')"
        );
    }

    #[test]
    fn names_follow_the_hostname_rules() {
        for good in ["w1", "worker-1", "a", &"x".repeat(63)] {
            assert!(NodeName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Worker", "a_b", "a.b", &"x".repeat(64)] {
            let e = NodeName::new(bad).unwrap_err();
            assert!(e.to_string().contains("is not a node name"), "{bad}: {e}");
        }
        let e: Result<NodeName, _> = serde_json::from_value(serde_json::json!("Bad_Name"));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("`Bad_Name` is not a node name")
        );
    }

    #[test]
    fn roles_read_and_print_as_their_names() {
        for r in ROLES {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("node_types")).unwrap();
        std::fs::write(d.path().join(STANDALONE_MACHINE), "{ ... }: { }").unwrap();
        assert_eq!(Role::Fleet.node_type_file_in(d.path()), STANDALONE_MACHINE);
        assert_eq!(
            Role::Cluster.node_type_file_in(d.path()),
            "node_types/cluster_node.nix"
        );
        std::fs::write(d.path().join("node_types/fleet_node.nix"), "{ ... }: { }").unwrap();
        assert_eq!(
            Role::Fleet.node_type_file_in(d.path()),
            "node_types/fleet_node.nix",
            "ours wins"
        );
        assert_eq!(Role::Ctrl.node_type_file(), "node_types/control_node.nix");
        assert_eq!(
            Role::Ingress.node_type_file(),
            "node_types/ingress_node.nix"
        );
        let e = "worker".parse::<Role>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`worker` is not a role; roles are ctrl, cluster, ingress and fleet"
        );
    }
}
