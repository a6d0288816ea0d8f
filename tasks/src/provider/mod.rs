//! [`Provider`]: where a cluster's servers come from: Hetzner Cloud, or a fixed list.

mod hetzner;
mod selfhosted;

pub use hetzner::{DEFAULT_ENDPOINT, Hetzner};
pub use selfhosted::{Listing, SelfHosted};

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

/// Label naming the cluster a server belongs to.
pub const LABEL_CLUSTER: &str = "nix-infra.cluster";
/// Label naming the node a server is.
pub const LABEL_NODE: &str = "nix-infra.node";
/// Label naming the node's role (ctrl, cluster, ingress).
pub const LABEL_ROLE: &str = "nix-infra.role";

/// A server to create (or adopt, if one with the same labels exists).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSpec {
    /// The cluster.
    pub cluster: String,
    /// The node name; also the server's name.
    pub node: String,
    /// The node's role.
    pub role: String,
    /// Server type, e.g. `cx22`.
    pub server_type: String,
    /// Image, e.g. `ubuntu-24.04`.
    pub image: String,
    /// Location, e.g. `fsn1`.
    pub location: Option<String>,
    /// Name of the SSH key to install.
    pub ssh_key: String,
    /// Placement group id.
    pub placement_group: Option<i64>,
    /// cloud-init user data.
    pub user_data: Option<String>,
}

/// A server as the provider reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    /// Provider id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Public IPv4 address.
    pub ipv4: Option<String>,
    /// Provider status, e.g. `running`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// How to log in, when the server says (a `servers.yaml` entry's
    /// `ssh_key` and `username`); otherwise the cluster's key, as root.
    pub login: Option<Login>,
}

/// A server's own SSH login.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Login {
    /// The private key file.
    pub key: std::path::PathBuf,
    /// The user (default `root`).
    pub user: String,
}

impl ServerInfo {
    /// The node label, if the server belongs to a cluster.
    pub fn node(&self) -> Option<&str> {
        self.labels.get(LABEL_NODE).map(String::as_str)
    }
}

/// An uploaded SSH key.
#[derive(Clone, Debug, PartialEq)]
pub struct SshKeyInfo {
    /// Provider id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// MD5 fingerprint `aa:bb:…`.
    pub fingerprint: String,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Rate limited for longer than the client was willing to wait.
    #[error("rate limited by the provider; retry in {0:?}")]
    RateLimited(Duration),
    /// A transient failure (5xx, network); retrying may help.
    #[error("provider unavailable: {0}")]
    Transient(String),
    /// The provider refused the request; retrying will not help.
    #[error("provider refused the request ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The provider's error code, e.g. `uniqueness_error`.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// An SSH key of that name exists with another fingerprint.
    #[error(
        "SSH key `{name}` exists with fingerprint {existing}, but the cluster's key is {wanted}"
    )]
    KeyMismatch {
        /// The key name.
        name: String,
        /// The fingerprint the provider has.
        existing: String,
        /// The fingerprint of the cluster's key.
        wanted: String,
    },
    /// The provider cannot do this (a fixed server list cannot create servers).
    #[error("{0}")]
    Unsupported(String),
    /// Bad configuration (missing token, bad key).
    #[error("{0}")]
    Config(String),
}

impl ProviderError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited(_) | ProviderError::Transient(_)
        )
    }
}

/// A source of servers for a cluster.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Makes sure the public key is uploaded; returns it, under the name it has
    /// (an identical key uploaded under another name is adopted, not duplicated).
    async fn ensure_ssh_key(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<SshKeyInfo, ProviderError>;
    /// Makes sure a spread placement group of this name exists; returns its id.
    async fn ensure_placement_group(&self, name: &str) -> Result<i64, ProviderError>;
    /// Creates the server, or adopts the one already labelled for this node; waits until created.
    async fn create_server(&self, spec: &ServerSpec) -> Result<ServerInfo, ProviderError>;
    /// Every server labelled for `cluster`.
    async fn list_servers(&self, cluster: &str) -> Result<Vec<ServerInfo>, ProviderError>;
    /// Deletes a server; one that is already gone is not an error.
    async fn delete_server(&self, id: i64) -> Result<(), ProviderError>;
    /// Labels the server named `node` (made by another tool) as `node` of
    /// `cluster` with `role`, keeping its other labels; a server already
    /// labelled for the cluster is returned as it is.
    async fn adopt_server(
        &self,
        cluster: &str,
        node: &str,
        role: &str,
    ) -> Result<ServerInfo, ProviderError>;
    /// Labels the cluster's server of `node` with `role`, keeping its other
    /// labels (a node provisioned as one role that a command makes another,
    /// as `init-ctrl` does); a server labelled so already is returned as it is.
    async fn set_role(
        &self,
        cluster: &str,
        node: &str,
        role: &str,
    ) -> Result<ServerInfo, ProviderError>;
    /// Deletes the SSH key called `name`; `false` if there was none.
    async fn delete_ssh_key(&self, name: &str) -> Result<bool, ProviderError>;
}

/// The MD5 fingerprint (`aa:bb:…`) of an OpenSSH public key line, as Hetzner shows it.
pub fn fingerprint(public_key: &str) -> Result<String, ProviderError> {
    use base64::Engine;
    let blob = public_key
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| ProviderError::Config("the SSH public key has no key data".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|e| ProviderError::Config(format!("the SSH public key is not base64: {e}")))?;
    Ok(md5::compute(bytes)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}
