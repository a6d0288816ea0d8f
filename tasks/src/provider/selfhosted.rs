//! [`SelfHosted`]: servers you run yourself, listed in `servers.yaml`.
//!
//! ```yaml
//! servers:
//!   - name: node001
//!     ipv4: 203.0.113.10
//!     role: ctrl        # ctrl, cluster or ingress (default cluster)
//! ```
//! It lists these servers; it cannot create or destroy machines, and says so.

use super::{
    LABEL_CLUSTER, LABEL_NODE, LABEL_ROLE, Provider, ProviderError, ServerInfo, ServerSpec,
    SshKeyInfo,
};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    servers: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    ipv4: std::net::Ipv4Addr,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "cluster".into()
}

/// A fixed list of servers from `servers.yaml`.
#[derive(Clone, Debug)]
pub struct SelfHosted {
    cluster: String,
    servers: Vec<ServerInfo>,
}

impl SelfHosted {
    /// Reads `path` for `cluster`; a malformed file is an error naming the problem.
    pub fn load(path: &Path, cluster: &str) -> Result<SelfHosted, ProviderError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProviderError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, cluster)
            .map_err(|e| ProviderError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses the YAML text of a `servers.yaml`.
    pub fn parse(text: &str, cluster: &str) -> Result<SelfHosted, String> {
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::BTreeSet::new();
        let mut servers = Vec::new();
        for (i, e) in file.servers.into_iter().enumerate() {
            if !seen.insert(e.name.clone()) {
                return Err(format!("server `{}` is listed twice", e.name));
            }
            let labels = [
                (LABEL_CLUSTER, cluster.to_string()),
                (LABEL_NODE, e.name.clone()),
                (LABEL_ROLE, e.role),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            servers.push(ServerInfo {
                id: i as i64 + 1,
                name: e.name,
                ipv4: Some(e.ipv4.to_string()),
                status: "running".into(),
                labels,
            });
        }
        Ok(SelfHosted {
            cluster: cluster.into(),
            servers,
        })
    }
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
        self.servers
            .iter()
            .find(|s| s.name == spec.node && spec.cluster == self.cluster)
            .cloned()
            .ok_or_else(|| refuse(&format!("create server `{}`", spec.node)))
    }

    async fn list_servers(&self, cluster: &str) -> Result<Vec<ServerInfo>, ProviderError> {
        Ok(if cluster == self.cluster {
            self.servers.clone()
        } else {
            Vec::new()
        })
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
