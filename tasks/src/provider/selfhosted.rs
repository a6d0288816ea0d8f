//! [`SelfHosted`]: servers you run yourself, listed in `servers.yaml`.
//!
//! Two formats. nix-infra's, a list with roles:
//! ```yaml
//! servers:
//!   - name: node001
//!     ipv4: 203.0.113.10
//!     role: ctrl        # ctrl, cluster, ingress or fleet (default cluster)
//! ```
//! and the Dart nix-infra's, a map by server name, each with its own login:
//! ```yaml
//! servers:
//!   web-server-1:
//!     ip: 192.168.1.10
//!     ssh_key: ./ssh/web-server-1   # relative to the repo, or absolute
//!     username: root                # optional
//!     description: Primary web server
//!     metadata: { location: rack-1 }
//!   cloud-box:
//!     provider: hetzner             # the address of the Hetzner server of that name
//!     ssh_key: ./ssh/nixinfra
//! ```
//! A Dart entry has no role: `metadata.role` if it sets one, else `ctrl` for
//! the names the caller lists as control nodes (`CTRL_NODES`), else none
//! (no role label): the command that names the server gives it one.
//! It lists these servers; it cannot create or destroy machines, and says so.

use super::{
    Hetzner, LABEL_CLUSTER, LABEL_NODE, LABEL_ROLE, Login, Provider, ProviderError, ServerInfo,
    ServerSpec, SshKeyInfo,
};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    servers: serde_yaml_ng::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    ipv4: std::net::Ipv4Addr,
    #[serde(default = "default_role")]
    role: String,
}

/// One server of a Dart-format `servers.yaml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DartEntry {
    #[serde(default)]
    ip: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    provider: Option<String>,
    ssh_key: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<serde_yaml_ng::Mapping>,
}

fn default_role() -> String {
    "cluster".into()
}

/// A fixed list of servers from `servers.yaml`.
#[derive(Clone, Debug)]
pub struct SelfHosted {
    cluster: String,
    servers: Vec<ServerInfo>,
    /// Entries whose address Hetzner knows (`provider: hetzner`).
    hetzner: Option<Hetzner>,
}

/// How to read a `servers.yaml`.
#[derive(Clone, Debug, Default)]
pub struct Listing<'a> {
    /// The control nodes (`CTRL_NODES`), for Dart entries without a role.
    pub ctrl_nodes: &'a [String],
    /// The client for `provider: hetzner` entries.
    pub hetzner: Option<Hetzner>,
}

impl SelfHosted {
    /// Reads `path` for `cluster`; a malformed file is an error naming the problem.
    pub fn load(path: &Path, cluster: &str) -> Result<SelfHosted, ProviderError> {
        Self::load_with(path, cluster, Listing::default())
    }

    /// [`SelfHosted::load`], with control nodes and a Hetzner client for Dart entries.
    pub fn load_with(
        path: &Path,
        cluster: &str,
        how: Listing,
    ) -> Result<SelfHosted, ProviderError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProviderError::Config(format!("cannot read {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut p = Self::parse_in(&text, cluster, dir, how.ctrl_nodes)
            .map_err(|e| ProviderError::Config(format!("{}: {e}", path.display())))?;
        p.hetzner = how.hetzner;
        let needs = p.servers.iter().filter(|s| s.ipv4.is_none()).count();
        if needs > 0 && p.hetzner.is_none() {
            return Err(ProviderError::Config(format!(
                "{}: {needs} server(s) say `provider: hetzner`: set HCLOUD_TOKEN to find their addresses",
                path.display()
            )));
        }
        Ok(p)
    }

    /// Parses the YAML text of a `servers.yaml` (paths relative to the current folder).
    pub fn parse(text: &str, cluster: &str) -> Result<SelfHosted, String> {
        Self::parse_in(text, cluster, Path::new("."), &[])
    }

    fn parse_in(
        text: &str,
        cluster: &str,
        dir: &Path,
        ctrl_nodes: &[String],
    ) -> Result<SelfHosted, String> {
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let entries = match file.servers {
            serde_yaml_ng::Value::Mapping(map) => dart_entries(map, dir, ctrl_nodes)?,
            list => serde_yaml_ng::from_value::<Vec<Entry>>(list)
                .map_err(|e| format!("servers: {e}"))?
                .into_iter()
                .map(|e| (e.name, Some(e.ipv4.to_string()), Some(e.role), None))
                .collect(),
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut servers = Vec::new();
        for (i, (name, ipv4, role, login)) in entries.into_iter().enumerate() {
            if !seen.insert(name.clone()) {
                return Err(format!("server `{name}` is listed twice"));
            }
            let labels = [
                (LABEL_CLUSTER, Some(cluster.to_string())),
                (LABEL_NODE, Some(name.clone())),
                (LABEL_ROLE, role),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect();
            servers.push(ServerInfo {
                id: i as i64 + 1,
                name,
                ipv4,
                status: "running".into(),
                labels,
                login,
            });
        }
        Ok(SelfHosted {
            cluster: cluster.into(),
            servers,
            hetzner: None,
        })
    }

    /// The listed servers, each with its address (asking Hetzner for the
    /// `provider: hetzner` ones).
    async fn resolved(&self) -> Result<Vec<ServerInfo>, ProviderError> {
        let mut out = self.servers.clone();
        for s in out.iter_mut().filter(|s| s.ipv4.is_none()) {
            let Some(h) = &self.hetzner else { continue };
            let found = h.server_by_name(&s.name).await?.ok_or_else(|| {
                ProviderError::Config(format!(
                    "servers.yaml: `{}` says `provider: hetzner`, but Hetzner has no server of that name",
                    s.name
                ))
            })?;
            s.ipv4 = found.ipv4;
            s.id = found.id;
        }
        Ok(out)
    }
}

/// (name, address, role, login) of each entry of a `servers.yaml`; a Dart
/// entry may have no role (the command that names it gives it one).
type Listed = (String, Option<String>, Option<String>, Option<Login>);

fn dart_entries(
    map: serde_yaml_ng::Mapping,
    dir: &Path,
    ctrl_nodes: &[String],
) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for (name, value) in map {
        let name = name
            .as_str()
            .ok_or_else(|| "a server's name must be a string".to_string())?
            .to_string();
        let e: DartEntry =
            serde_yaml_ng::from_value(value).map_err(|e| format!("server `{name}`: {e}"))?;
        let ipv4 = match (e.ip, e.provider.as_deref()) {
            (Some(ip), None) => Some(ip.to_string()),
            (None, Some("hetzner")) => None,
            (None, Some(other)) => {
                return Err(format!(
                    "server `{name}`: provider `{other}` is not one nix-infra knows (hetzner)"
                ));
            }
            (None, None) => {
                return Err(format!("server `{name}` is missing required field \"ip\""));
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "server `{name}`: give `ip` or `provider`, not both"
                ));
            }
        };
        let role = e
            .metadata
            .as_ref()
            .and_then(|m| m.get("role"))
            .and_then(|r| r.as_str())
            .map(str::to_string)
            .or_else(|| ctrl_nodes.contains(&name).then(|| "ctrl".to_string()));
        let key = Path::new(&e.ssh_key);
        let login = Login {
            key: if key.is_absolute() {
                key.to_path_buf()
            } else {
                dir.join(key)
            },
            user: e.username.unwrap_or_else(|| "root".into()),
        };
        out.push((name, ipv4, role, Some(login)));
    }
    Ok(out)
}

fn refuse(what: &str) -> ProviderError {
    ProviderError::Unsupported(format!(
        "self-hosted servers (servers.yaml) cannot {what}; do it by hand and edit servers.yaml"
    ))
}

#[async_trait]
impl Provider for SelfHosted {
    async fn ensure_ssh_key(&self, _: &str, _: &str) -> Result<SshKeyInfo, ProviderError> {
        Err(refuse(
            "manage SSH keys (install the cluster's key in root's authorized_keys)",
        ))
    }

    async fn ensure_placement_group(&self, _: &str) -> Result<i64, ProviderError> {
        Err(refuse("have placement groups"))
    }

    async fn create_server(&self, spec: &ServerSpec) -> Result<ServerInfo, ProviderError> {
        // A listed node "exists already": adopt it. Anything else cannot be created.
        self.list_servers(&spec.cluster)
            .await?
            .into_iter()
            .find(|s| s.name == spec.node)
            .ok_or_else(|| refuse(&format!("create server `{}`", spec.node)))
    }

    async fn list_servers(&self, cluster: &str) -> Result<Vec<ServerInfo>, ProviderError> {
        if cluster != self.cluster {
            return Ok(Vec::new());
        }
        self.resolved().await
    }

    async fn adopt_server(
        &self,
        cluster: &str,
        node: &str,
        _: &str,
    ) -> Result<ServerInfo, ProviderError> {
        // A listed server is the cluster's already.
        self.list_servers(cluster)
            .await?
            .into_iter()
            .find(|s| s.node() == Some(node))
            .ok_or_else(|| ProviderError::Unsupported(format!("{node} is not in servers.yaml")))
    }

    async fn set_role(
        &self,
        cluster: &str,
        node: &str,
        role: &str,
    ) -> Result<ServerInfo, ProviderError> {
        // Roles come from servers.yaml (or CTRL_NODES): one that already says so is fine.
        let s = self.adopt_server(cluster, node, role).await?;
        if s.labels.get(LABEL_ROLE).map(String::as_str) == Some(role) {
            return Ok(s);
        }
        Err(refuse(&format!(
            "change the role of {node} to {role} (set its metadata.role, or name it in CTRL_NODES)"
        )))
    }

    async fn delete_ssh_key(&self, _: &str) -> Result<bool, ProviderError> {
        // Keys of self-hosted servers are managed on the servers themselves.
        Ok(false)
    }

    async fn delete_server(&self, id: i64) -> Result<(), ProviderError> {
        Err(refuse(&format!("destroy server {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_dart_format_gives_each_server_its_login_and_role() {
        let text = "servers:\n  web-1:\n    ip: 192.168.1.10\n    ssh_key: ./ssh/web-1\n    \
                    description: Primary web server\n    username: admin\n    metadata:\n      location: rack-1\n  \
                    etcd001:\n    ip: 192.168.1.20\n    ssh_key: /keys/etcd\n  \
                    box:\n    ip: 192.168.1.30\n    ssh_key: k\n    metadata: { role: fleet }\n";
        let p =
            SelfHosted::parse_in(text, "c1", Path::new("/repo"), &["etcd001".to_string()]).unwrap();
        let list = p.list_servers("c1").await.unwrap();
        let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web-1", "etcd001", "box"], "in the file's order");
        let roles: Vec<Option<&str>> = list
            .iter()
            .map(|s| s.labels.get(LABEL_ROLE).map(String::as_str))
            .collect();
        assert_eq!(roles, [None, Some("ctrl"), Some("fleet")]);
        assert_eq!(
            list[0].login,
            Some(Login {
                key: "/repo/./ssh/web-1".into(),
                user: "admin".into()
            })
        );
        assert_eq!(list[1].login.as_ref().unwrap().key, Path::new("/keys/etcd"));
        assert_eq!(list[1].login.as_ref().unwrap().user, "root");
        assert_eq!(list[2].ipv4.as_deref(), Some("192.168.1.30"));
        for (bad, why) in [
            (
                "servers:\n  a:\n    ssh_key: k\n",
                "missing required field \"ip\"",
            ),
            ("servers:\n  a:\n    ip: 1.1.1.1\n", "ssh_key"),
            (
                "servers:\n  a:\n    ip: 1.1.1.1\n    ssh_key: k\n    colour: red\n",
                "colour",
            ),
            (
                "servers:\n  a:\n    provider: aws\n    ssh_key: k\n",
                "provider `aws`",
            ),
        ] {
            let e = SelfHosted::parse(bad, "c").err().unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("servers.yaml");
        std::fs::write(
            &f,
            "servers:\n  a:\n    provider: hetzner\n    ssh_key: k\n",
        )
        .unwrap();
        let e = SelfHosted::load(&f, "c").unwrap_err().to_string();
        assert!(e.contains("set HCLOUD_TOKEN"), "{e}");
    }

    #[tokio::test]
    async fn lists_and_refuses_to_create_or_destroy() {
        let p = SelfHosted::parse(
            "servers:\n  - name: a\n    ipv4: 10.0.0.1\n    role: ctrl\n  - name: b\n    ipv4: 10.0.0.2\n",
            "c1",
        )
        .unwrap();
        let list = p.list_servers("c1").await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].labels[LABEL_ROLE], "ctrl");
        assert_eq!(list[1].labels[LABEL_ROLE], "cluster");
        assert!(p.list_servers("other").await.unwrap().is_empty());
        let spec = |node: &str| ServerSpec {
            cluster: "c1".into(),
            node: node.into(),
            role: "cluster".into(),
            server_type: "x".into(),
            image: "x".into(),
            location: None,
            ssh_key: "k".into(),
            placement_group: None,
            user_data: None,
        };
        assert_eq!(
            p.create_server(&spec("b")).await.unwrap().ipv4.as_deref(),
            Some("10.0.0.2")
        );
        let err = p.create_server(&spec("zz")).await.unwrap_err().to_string();
        assert!(err.contains("cannot create server `zz`"), "{err}");
        assert!(
            p.delete_server(1)
                .await
                .unwrap_err()
                .to_string()
                .contains("cannot destroy")
        );
        assert!(SelfHosted::parse("servers:\n  - name: a\n    ipv4: nope\n", "c").is_err());
        assert!(
            SelfHosted::parse(
                "servers:\n  - {name: a, ipv4: 1.1.1.1}\n  - {name: a, ipv4: 1.1.1.2}\n",
                "c"
            )
            .unwrap_err()
            .contains("listed twice")
        );
    }
}
