//! The Dart nix-infra's repo layout: a repo whose root holds a
//! `configuration.nix` is deployed the way the Dart tool deploys it.
//!
//! What goes where (`/etc/nixos/…`), and which placeholders each file gets:
//!
//! | repo file                         | on the node              | placeholders                          |
//! |-----------------------------------|--------------------------|---------------------------------------|
//! | `configuration.nix`               | `configuration.nix`      | `sshKey`, `nodeName`, `nixVersion`    |
//! | `flake.nix`                       | `flake.nix`              | `nixVersion`, `nodeName`, `hwArch`    |
//! | `node_types/control_node.nix`     | `control_node.nix`       | `etcdClusterToken`, `etcdCluster`     |
//! | `node_types/<role>_node.nix`      | `cluster_node.nix`       | `etcdCluster` (fleet: copied as is)   |
//! | `nodes/<node>.nix`                | `<node>.nix`             | the node values ([`DartValues::node`]) |
//! | `modules/*` (top-level files)     | `modules/*`              | none: copied byte for byte            |
//! | `app_modules/**`                  | `app_modules/**`         | none: copied byte for byte            |
//!
//! Every rendered file also takes `[%%secrets/<name>%%]` and
//! `[%%pre-build-secrets/<name>%%]`: both become the bare name, and the
//! node gets that secret (a pre-build secret also goes to `/run/keys/<name>`
//! before the rebuild). Unlike the Dart tool, a placeholder a file does not
//! take is an error naming it and the file, never left in the output.

use crate::domain::Role;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Whether the repo at `dir` is in the Dart tool's layout (its root has a
/// `configuration.nix`); otherwise nix-infra writes `configuration.nix` itself.
pub fn is_dart_layout(dir: &Path) -> bool {
    dir.join("configuration.nix").is_file()
}

/// The CPU architecture `[%%hwArch%%]` names (the Dart tool's only one).
pub const HW_ARCH: &str = "x86_64-linux";

/// The values of a node's placeholders, per file kind (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DartValues {
    /// `[%%sshKey%%]`: the public key nix-infra logs in with.
    pub ssh_key: String,
    /// `[%%nodeName%%]`.
    pub node_name: String,
    /// `[%%nixVersion%%]`: the release, e.g. `24.11`.
    pub nix_version: String,
    /// `[%%etcdCluster%%]`: `{ name = "…"; ip = "…"; }` per control node.
    pub etcd_cluster: String,
    /// `[%%etcdClusterToken%%]`.
    pub etcd_cluster_token: String,
    /// The keys of `nodes/<node>.nix` (and of secret values and action
    /// variables): `<name>.ipv4`, `<name>.overlayIp`, `localhost.*`,
    /// `nix-store.trusted-public-keys`.
    pub node: BTreeMap<String, String>,
}

impl DartValues {
    fn configuration(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("sshKey".to_string(), self.ssh_key.clone()),
            ("nodeName".into(), self.node_name.clone()),
            ("nixVersion".into(), self.nix_version.clone()),
        ])
    }

    fn flake(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("nixVersion".to_string(), self.nix_version.clone()),
            ("nodeName".into(), self.node_name.clone()),
            ("hwArch".into(), HW_ARCH.into()),
        ])
    }

    fn node_type(&self, role: Role) -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([("etcdCluster".to_string(), self.etcd_cluster.clone())]);
        if role.is_ctrl() {
            m.insert("etcdClusterToken".into(), self.etcd_cluster_token.clone());
        }
        m
    }
}

/// `(name, ip)` of the control nodes as `[%%etcdCluster%%]` lists them.
pub fn etcd_cluster(members: &[(String, String)]) -> String {
    members
        .iter()
        .map(|(name, ip)| {
            format!(
                "{{ name = {}; ip = {}; }}",
                super::nix_string(name),
                super::nix_string(ip)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `[%%nix-store.trusted-public-keys%%]`: a Nix list of the keys.
pub fn trusted_keys_list(keys: &[String]) -> String {
    let items: Vec<String> = keys.iter().map(|k| super::nix_string(k.trim())).collect();
    format!("[ {} ]", items.join(" "))
}

/// The prefix of the secrets whose values make `[%%nix-store.trusted-public-keys%%]`.
pub const TRUSTED_KEYS_PREFIX: &str = "nix-store.trusted-public-keys";

/// What rendering found besides the text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Placeholders with no value.
    pub missing: BTreeSet<String>,
    /// `secrets/<name>` and `pre-build-secrets/<name>` names.
    pub secrets: BTreeSet<String>,
    /// `pre-build-secrets/<name>` names.
    pub pre_build: BTreeSet<String>,
}

/// Fills every `[%%key%%]` of `text` (on one line, as the Dart tool's
/// pattern matches) from `vars`, the secret prefixes included. A missing key
/// is recorded, and replaced by `stand_in` when one is given (the checks
/// before a run), else left as it was.
pub fn render(
    text: &str,
    vars: &BTreeMap<String, String>,
    stand_in: Option<&str>,
    found: &mut Found,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[%%") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let Some(end) = after[..line_end].find("%%]") else {
            out.push_str("[%%");
            rest = after;
            continue;
        };
        let key = &after[..end];
        let secret = |prefix: &str| {
            key.strip_prefix(prefix)
                .map(|k| k.rsplit('/').next().unwrap_or(k).to_string())
        };
        if let Some(name) = secret("pre-build-secrets/") {
            found.secrets.insert(name.clone());
            found.pre_build.insert(name.clone());
            out.push_str(&name);
        } else if let Some(name) = secret("secrets/") {
            found.secrets.insert(name.clone());
            out.push_str(&name);
        } else if let Some(v) = vars.get(key) {
            out.push_str(v);
        } else {
            found.missing.insert(key.to_string());
            out.push_str(stand_in.unwrap_or(&rest[start..start + 3 + end + 3]));
        }
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    out
}

/// A node's `/etc/nixos` in the Dart layout, staged locally.
#[derive(Debug)]
pub struct DartTree {
    /// The tree, laid out as `/etc/nixos`.
    pub tree: tempfile::TempDir,
    /// Unknown placeholders, per repo file.
    pub missing: BTreeMap<String, BTreeSet<String>>,
    /// The secrets the rendered files name, each with the repo files naming it.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
    /// The pre-build secrets among them.
    pub pre_build: BTreeSet<String>,
}

impl DartTree {
    /// Fails naming every unknown placeholder, per file.
    pub fn complete(self) -> Result<DartTree, String> {
        if self.missing.is_empty() {
            return Ok(self);
        }
        let parts: Vec<String> = self
            .missing
            .iter()
            .map(|(f, keys)| {
                let keys: Vec<String> = keys.iter().map(|k| format!("[%%{k}%%]")).collect();
                format!("{f}: {}", keys.join(", "))
            })
            .collect();
        Err(format!("unknown placeholders: {}", parts.join("; ")))
    }
}

/// The repo file behind the node type of `role` in the Dart layout, and
/// the name it has on the node.
pub fn node_type_files(dir: &Path, role: Role) -> (String, &'static str) {
    match role {
        Role::Ctrl => (role.node_type_file(), "control_node.nix"),
        _ => (role.node_type_file_in(dir), "cluster_node.nix"),
    }
}

/// Stages node `node`'s `/etc/nixos` from the Dart-layout repo at `dir`
/// (see the module docs). `stand_in` fills unknown placeholders (the checks
/// before a run); without one they stay, and [`DartTree::complete`] refuses.
pub fn stage(
    dir: &Path,
    nodes: &Path,
    node: &str,
    role: Role,
    values: &DartValues,
    stand_in: Option<&str>,
) -> Result<DartTree, String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let mut out = DartTree {
        tree: tempfile::tempdir().map_err(|e| e.to_string())?,
        missing: BTreeMap::new(),
        secrets: BTreeMap::new(),
        pre_build: BTreeSet::new(),
    };
    let s = &out.tree.path().to_path_buf();
    let (type_file, type_name) = node_type_files(dir, role);
    let mut rendered: Vec<(String, String, BTreeMap<String, String>)> = vec![
        (
            "configuration.nix".into(),
            "configuration.nix".into(),
            values.configuration(),
        ),
        ("flake.nix".into(), "flake.nix".into(), values.flake()),
        (
            format!("nodes/{node}.nix"),
            format!("{node}.nix"),
            values.node.clone(),
        ),
    ];
    if role.is_fleet() {
        copy_file(&dir.join(&type_file), &s.join(type_name))
            .map_err(|e| io(&dir.join(&type_file), e))?;
    } else {
        rendered.push((type_file, type_name.into(), values.node_type(role)));
    }
    let own = format!("nodes/{node}.nix");
    for (from, to, vars) in rendered {
        let src = if from == own {
            nodes.join(format!("{node}.nix"))
        } else {
            dir.join(&from)
        };
        if !src.is_file() {
            if from.starts_with("node_types/") {
                return Err(format!(
                    "{}: missing (a node of role {role} needs it)",
                    src.display()
                ));
            }
            continue;
        }
        let text = std::fs::read_to_string(&src).map_err(|e| io(&src, e))?;
        let mut found = Found::default();
        let text = render(&text, &vars, stand_in, &mut found);
        std::fs::write(s.join(&to), text).map_err(|e| io(&s.join(&to), e))?;
        if !found.missing.is_empty() {
            out.missing.insert(from.clone(), found.missing);
        }
        for name in found.secrets {
            out.secrets.entry(name).or_default().insert(from.clone());
        }
        out.pre_build.extend(found.pre_build);
    }
    copy_modules(dir, s).map_err(|e| format!("modules/: {e}"))?;
    let apps = dir.join("app_modules");
    if apps.is_dir() {
        copy_tree(&apps, &s.join("app_modules")).map_err(|e| io(&apps, e))?;
    }
    Ok(out)
}

/// `modules/`: its top-level files only, as the Dart tool copies them.
fn copy_modules(dir: &Path, staged: &Path) -> std::io::Result<()> {
    let modules = dir.join("modules");
    if !modules.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(staged.join("modules"))?;
    for e in std::fs::read_dir(&modules)? {
        let e = e?;
        if e.path().is_file() {
            copy_file(&e.path(), &staged.join("modules").join(e.file_name()))?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to).map(|_| ())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            copy_file(&e.path(), &dst)?;
        }
    }
    Ok(())
}

/// The repo file a staged Dart-layout file comes from.
pub fn staged_source(dir: &Path, staged: &str, node: &str, role: Role) -> String {
    let (type_file, type_name) = node_type_files(dir, role);
    if staged == type_name {
        type_file
    } else if staged == format!("{node}.nix") {
        format!("nodes/{node}.nix")
    } else {
        staged.to_string()
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_become_bare_names_and_unknown_keys_are_named() {
        let mut f = Found::default();
        let out = render(
            "a=\"/root/secrets/[%%secrets/api-key%%]\" b=[%%pre-build-secrets/x/netrc%%] \
             c=[%%localhost.ipv4%%] d=[%%nope%%] e=[%%open\n%%]",
            &vars(&[("localhost.ipv4", "1.2.3.4")]),
            None,
            &mut f,
        );
        assert_eq!(
            out,
            "a=\"/root/secrets/api-key\" b=netrc c=1.2.3.4 d=[%%nope%%] e=[%%open\n%%]"
        );
        assert_eq!(f.missing, BTreeSet::from(["nope".to_string()]));
        assert_eq!(
            f.secrets,
            BTreeSet::from(["api-key".to_string(), "netrc".into()])
        );
        assert_eq!(f.pre_build, BTreeSet::from(["netrc".to_string()]));
        let mut f = Found::default();
        assert_eq!(
            render("[%%nope%%]", &BTreeMap::new(), Some("null"), &mut f),
            "null"
        );
    }

    #[test]
    fn the_dart_value_formats() {
        let members = [("etcd001".to_string(), "10.0.0.1".to_string())];
        assert_eq!(
            etcd_cluster(&members),
            r#"{ name = "etcd001"; ip = "10.0.0.1"; }"#
        );
        assert_eq!(trusted_keys_list(&[]), "[  ]");
        assert_eq!(
            trusted_keys_list(&["cache:abc=\n".into(), "b:c".into()]),
            r#"[ "cache:abc=" "b:c" ]"#
        );
    }
}
