//! [`Cluster`]: a cluster repo on disk, with its env file, keys, provider and inventory.
//!
//! Everything that reads the cluster directory goes through here, for the
//! CLI's checks before a run and for a run's steps alike, so both read the
//! same variables, the same key and the same provider.

use crate::domain::{NodeName, Role};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tasks::ca::Ca;
use tasks::dart_ca::DartCa;
use tasks::provider::{Hetzner, LABEL_ROLE, Provider, SelfHosted, ServerInfo};
use tasks::secrets::{SecretKey, SecretStore};

/// Why a cluster directory cannot be used as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Bad input or a repo that is not ready (refused before anything is written).
    #[error("{0}")]
    Refused(String),
    /// Something outside could not be asked (the provider is down, a file unreadable).
    #[error("{0}")]
    Unavailable(String),
    /// The targets include servers the provider has under their names but
    /// without nix-infra's labels (made by the Dart nix-infra, say): adopting
    /// them (`cluster adopt`) makes them nodes. Refused as it is.
    #[error("{message}")]
    Adoptable {
        /// The servers, by name.
        nodes: Vec<String>,
        /// Whether the command was a `fleet` one.
        fleet: bool,
        /// What to run, as one would type it.
        message: String,
    },
}

/// What `nix-infra init` must have made.
const INIT_FILES: [&str; 3] = ["keys/id_ed25519.pub", "keys/age.key", "ca/root.pem"];

/// A cluster repo: its directory, its name and its env file's variables.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The directory, absolute.
    pub dir: PathBuf,
    /// The cluster's name (labels, certificate names).
    pub name: String,
    /// The env file given explicitly (`--env`), if any.
    pub env_file: Option<PathBuf>,
    env: BTreeMap<String, String>,
    /// Settings a command gives on its command line, over the environment and the env file.
    settings: BTreeMap<String, String>,
}

/// A variable a command may set for itself on its command line (the Dart
/// tool's flags), over the environment and the env file. Never a secret:
/// settings are stored with a run's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `CTRL_NODES` (`--ctrl-nodes`): the control nodes, space-separated.
    CtrlNodes,
    /// `CLUSTER_UUID` (`--cluster-uuid`): etcd's initial cluster token.
    ClusterUuid,
    /// `SSH_KEY` (`--ssh-key`): the name of the Dart nix-infra's key, `ssh/NAME`.
    SshKey,
}

impl Setting {
    /// Every setting.
    pub const ALL: [Setting; 3] = [Setting::CtrlNodes, Setting::ClusterUuid, Setting::SshKey];

    /// The variable's name.
    pub fn key(self) -> &'static str {
        match self {
            Setting::CtrlNodes => "CTRL_NODES",
            Setting::ClusterUuid => "CLUSTER_UUID",
            Setting::SshKey => "SSH_KEY",
        }
    }
}

impl Cluster {
    /// Opens `dir`, named after its folder, and parses its env file
    /// (`env_file`, else `DIR/.env`; a missing default file is empty).
    pub fn open(dir: &Path, env_file: Option<&Path>) -> Result<Cluster, ClusterError> {
        let dir = std::fs::canonicalize(dir).map_err(|e| {
            ClusterError::Refused(format!("working directory {}: {e}", dir.display()))
        })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "cluster".into());
        let env_file = match env_file {
            Some(f) => Some(
                std::fs::canonicalize(f)
                    .map_err(|e| ClusterError::Refused(format!("env file {}: {e}", f.display())))?,
            ),
            None => None,
        };
        let path = env_file.clone().unwrap_or_else(|| dir.join(".env"));
        let env = read_env_file(&path)?;
        Ok(Cluster {
            dir,
            name,
            env_file,
            env,
            settings: BTreeMap::new(),
        })
    }

    /// Opens the repo of a run that already passed its checks. An env file
    /// that is gone since reads as empty (the process environment still
    /// counts); one that is there must parse.
    pub fn open_for_run(dir: &Path, env_file: Option<&Path>) -> Result<Cluster, ClusterError> {
        match env_file {
            Some(f) if !f.exists() => {
                let mut c = Cluster::open(dir, None)?;
                c.env = BTreeMap::new();
                c.env_file = Some(f.to_path_buf());
                Ok(c)
            }
            _ => Cluster::open(dir, env_file),
        }
    }

    /// The same cluster under another name (a run input names its cluster).
    pub fn named(mut self, name: &str) -> Cluster {
        self.name = name.to_string();
        self
    }

    /// The env file in use.
    pub fn env_path(&self) -> PathBuf {
        self.env_file
            .clone()
            .unwrap_or_else(|| self.dir.join(".env"))
    }

    /// The same cluster with `setting` given on the command line: it wins
    /// over the environment and the env file.
    pub fn with_setting(mut self, setting: Setting, value: &str) -> Cluster {
        self.settings
            .insert(setting.key().to_string(), value.to_string());
        self
    }

    /// The settings given on the command line, by variable name (a run's input keeps them).
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// The same cluster with the settings a run's input kept (names that
    /// are no [`Setting`] are left out).
    pub fn with_settings(mut self, settings: &BTreeMap<String, String>) -> Cluster {
        for s in Setting::ALL {
            if let Some(v) = settings.get(s.key()) {
                self = self.with_setting(s, v);
            }
        }
        self
    }

    /// A variable given on the command line ([`Setting`]), else from the
    /// environment, else the env file; empty counts as unset.
    pub fn var(&self, key: &str) -> Option<String> {
        if let Some(v) = self.settings.get(key) {
            return Some(v.clone()).filter(|v| !v.is_empty());
        }
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| self.env.get(key).cloned())
            .filter(|v| !v.is_empty())
    }

    /// Fails unless every file exists, naming the missing ones.
    pub fn need(&self, files: &[String], hint: &str) -> Result<(), ClusterError> {
        let missing: Vec<_> = files
            .iter()
            .filter(|f| !self.dir.join(f).exists())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ClusterError::Refused(format!(
            "{} has no {} ({hint})",
            self.dir.display(),
            missing.join(", ")
        )))
    }

    /// Fails unless `nix-infra init` has run here.
    pub fn need_init(&self) -> Result<(), ClusterError> {
        let key = self.ssh_key().public;
        let key = key
            .strip_prefix(&self.dir)
            .unwrap_or(&key)
            .display()
            .to_string();
        let files: Vec<String> = INIT_FILES
            .iter()
            .filter(|f| **f != INIT_FILES[2] || !self.has_ca())
            .map(|f| {
                if *f == INIT_FILES[0] {
                    key.clone()
                } else {
                    f.to_string()
                }
            })
            .collect();
        self.need(&files, "run `nix-infra init`")?;
        // The Dart tool's CA must open now (INTERMEDIATE_CA_PASS), not after
        // servers are bought.
        if DartCa::find(&self.dir.join("ca")).is_some() {
            self.ca()?;
        }
        Ok(())
    }

    /// Fails unless every role's node type file exists.
    pub fn need_types(&self, roles: impl IntoIterator<Item = Role>) -> Result<(), ClusterError> {
        let mut files: Vec<String> = roles
            .into_iter()
            .map(|r| r.node_type_file_in(&self.dir))
            .collect();
        files.dedup();
        self.need(
            &files,
            "add the node type, or `nix-infra init --example` for a starting point",
        )
    }

    /// The SSH key nix-infra logs in with, and its name at the provider:
    /// the Dart nix-infra's `ssh/$SSH_KEY` (named `$SSH_KEY`) when the repo
    /// has it, else `keys/id_ed25519` (named `nix-infra-<cluster>`).
    pub fn ssh_key(&self) -> ClusterKey {
        if let Some(name) = self.var("SSH_KEY") {
            let private = self.dir.join("ssh").join(&name);
            // The Dart tool's key: there, or to be made there (a Dart-layout
            // repo, or a key named on the command line).
            let named = self.settings.contains_key(Setting::SshKey.key());
            if private.is_file() || named || crate::node::is_dart_layout(&self.dir) {
                return ClusterKey {
                    public: private.with_file_name(format!("{name}.pub")),
                    private,
                    provider_name: name,
                };
            }
        }
        let private = self.dir.join("keys").join("id_ed25519");
        ClusterKey {
            public: private.with_extension("pub"),
            private,
            provider_name: format!("nix-infra-{}", self.name),
        }
    }

    /// Whether the repo has a CA: nix-infra's (`ca/root.pem`) or the Dart
    /// nix-infra's openssl CA (`ca/intermediate/`).
    pub fn has_ca(&self) -> bool {
        self.dir.join("ca/root.pem").exists() || DartCa::find(&self.dir.join("ca")).is_some()
    }

    /// The cluster's CA. A repo with the Dart nix-infra's openssl CA keeps
    /// it: certificates are issued from its intermediate (opened with
    /// `INTERMEDIATE_CA_PASS`), so etcd members it made keep trusting them,
    /// and what nix-infra issues is kept in `.nix-infra/ca/`, not in `ca/`.
    pub fn ca(&self) -> Result<Ca, ClusterError> {
        let key = self.identity()?;
        let ca_dir = self.dir.join("ca");
        let Some(dart) = DartCa::find(&ca_dir) else {
            return Ca::load(&ca_dir, key).map_err(|e| ClusterError::Refused(e.to_string()));
        };
        let pass = self.var("INTERMEDIATE_CA_PASS").ok_or_else(|| {
            ClusterError::Refused(format!(
                "{} holds the Dart nix-infra's CA: set INTERMEDIATE_CA_PASS (in the environment or {}) \
                 to issue certificates from its intermediate",
                ca_dir.display(),
                self.env_path().display()
            ))
        })?;
        let pem = dart
            .open_key(&pass.into())
            .map_err(|e| ClusterError::Refused(e.to_string()))?;
        Ca::load_dart(&dart, &pem, &self.dir.join(".nix-infra").join("ca"), key)
            .map_err(|e| ClusterError::Refused(e.to_string()))
    }

    /// The cluster's age identity (`keys/age.key`): CA keys are encrypted with it.
    pub fn identity(&self) -> Result<SecretKey, ClusterError> {
        SecretKey::load_identity(&self.dir.join("keys").join("age.key"))
            .map_err(|e| ClusterError::Refused(format!("{e} (run `nix-infra init`)")))
    }

    /// The key secrets use: `SECRETS_PASS` (environment, then the env file),
    /// else `SECRETS_PWD` (the older name the Dart templates still write; same
    /// order), else the identity. A `SECRETS_PASS` anywhere wins over a
    /// `SECRETS_PWD` anywhere, as in the Dart tool.
    pub fn secret_key(&self) -> Result<SecretKey, ClusterError> {
        if let Some(p) = self.var("SECRETS_PASS").or_else(|| self.var("SECRETS_PWD")) {
            return Ok(SecretKey::Passphrase(p.into()));
        }
        self.identity().map_err(|e| {
            ClusterError::Refused(format!(
                "{e}, or set SECRETS_PASS in the environment or {}",
                self.env_path().display()
            ))
        })
    }

    /// The cluster's secret store (`DIR/secrets`).
    pub fn secrets(&self) -> Result<SecretStore, ClusterError> {
        Ok(SecretStore::new(
            self.dir.join("secrets"),
            self.secret_key()?,
        ))
    }

    /// Where the cluster's servers come from: `servers.yaml` when the repo has
    /// one, else Hetzner Cloud (`HCLOUD_TOKEN`, `HCLOUD_ENDPOINT`).
    pub fn provider(&self) -> Result<Arc<dyn Provider>, ClusterError> {
        let listed = self.dir.join("servers.yaml");
        if listed.exists() {
            let ctrl_nodes: Vec<String> = self
                .var("CTRL_NODES")
                .unwrap_or_default()
                .split([' ', ','])
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            let how = tasks::provider::Listing {
                ctrl_nodes: &ctrl_nodes,
                hetzner: self.hetzner().ok(),
            };
            let p = SelfHosted::load_with(&listed, &self.name, how)
                .map_err(|e| ClusterError::Refused(e.to_string()))?;
            return Ok(Arc::new(p));
        }
        Ok(Arc::new(self.hetzner()?))
    }

    /// The Hetzner Cloud client of this cluster.
    pub fn hetzner(&self) -> Result<Hetzner, ClusterError> {
        let token = self.var("HCLOUD_TOKEN").ok_or_else(|| {
            ClusterError::Refused(format!(
                "HCLOUD_TOKEN is not set: put it in {}, or run `nix-infra sandbox up` for a local cloud",
                self.env_path().display()
            ))
        })?;
        let endpoint = self
            .var("HCLOUD_ENDPOINT")
            .unwrap_or_else(|| tasks::provider::DEFAULT_ENDPOINT.into());
        Hetzner::new(endpoint, token).map_err(|e| ClusterError::Refused(e.to_string()))
    }

    /// The cluster's servers, as the provider lists them.
    pub async fn servers(&self) -> Result<Vec<ServerInfo>, ClusterError> {
        self.provider()?
            .list_servers(&self.name)
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("cannot list the cluster's servers: {e}"))
            })
    }

    /// The cluster's nodes by name and role, and the servers labelled for the
    /// cluster that cannot be nodes (a bad name, no role, an unknown role).
    pub async fn inventory(&self) -> Result<Inventory, ClusterError> {
        let mut inv = Inventory::default();
        for s in self.servers().await? {
            let Some(node) = s.node().map(str::to_string) else {
                continue;
            };
            let Some(role) = s.labels.get(LABEL_ROLE) else {
                // A Dart-format servers.yaml entry: the command gives the role.
                match NodeName::new(node.as_str()) {
                    Ok(name) => inv.unassigned.insert(name),
                    Err(e) => inv.unusable.insert(node, e.to_string()).is_none(),
                };
                continue;
            };
            match (NodeName::new(node.as_str()), role.parse::<Role>()) {
                (Ok(name), Ok(role)) => {
                    inv.nodes.insert(name, role);
                }
                (Err(e), _) => {
                    inv.unusable.insert(node, e.to_string());
                }
                (Ok(_), Err(e)) => {
                    inv.unusable.insert(node, format!("its role label: {e}"));
                }
            }
        }
        Ok(inv)
    }

    /// Of `names`, those the provider has as servers without nix-infra's
    /// labels (never on a self-hosted repo, whose servers are all listed).
    pub async fn unlabelled(&self, names: &[NodeName]) -> Result<Vec<String>, ClusterError> {
        if self.is_self_hosted() || names.is_empty() {
            return Ok(Vec::new());
        }
        let Ok(h) = self.hetzner() else {
            return Ok(Vec::new());
        };
        // One try each, all at once: if the provider cannot answer now, the
        // run's own steps will (a create under a taken name fails there,
        // before anything is installed).
        let h = h.with_patience(std::time::Duration::ZERO);
        let looked = futures::future::join_all(names.iter().map(|n| h.server_by_name(n.as_str())));
        let mut out = Vec::new();
        for (n, found) in names.iter().zip(looked.await) {
            match found {
                Ok(Some(s)) if !s.labels.contains_key(tasks::provider::LABEL_CLUSTER) => {
                    out.push(n.to_string());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot look up server {n} at the provider: {e}"),
            }
        }
        Ok(out)
    }

    /// Whether the repo lists its own machines (`servers.yaml`) instead of
    /// asking a cloud for them: nix-infra then cannot create or delete servers.
    pub fn is_self_hosted(&self) -> bool {
        self.dir.join("servers.yaml").exists()
    }

    /// Refuses `what` (a command that creates or deletes servers or keys at the
    /// provider) on a self-hosted cluster.
    pub fn need_cloud(&self, what: &str) -> Result<(), ClusterError> {
        if !self.is_self_hosted() {
            return Ok(());
        }
        Err(ClusterError::Refused(format!(
            "{what} needs a cloud provider, but {} lists this cluster's machines: \
             add the machine there and run `cluster init-node` (servers.yaml wins over HCLOUD_TOKEN)",
            self.dir.join("servers.yaml").display()
        )))
    }
}

/// The SSH key nix-infra logs in with (see [`Cluster::ssh_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKey {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file.
    pub public: PathBuf,
    /// The key's name at the provider.
    pub provider_name: String,
}

impl ClusterKey {
    /// The public key, trimmed; a missing file is refused, saying how to make one.
    pub fn public_key(&self) -> Result<String, ClusterError> {
        std::fs::read_to_string(&self.public)
            .map(|k| k.trim().to_string())
            .map_err(|e| {
                ClusterError::Refused(format!(
                    "{}: {e} (run `nix-infra init`)",
                    self.public.display()
                ))
            })
    }
}

/// What the provider lists for a cluster (see [`Cluster::inventory`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Node → role.
    pub nodes: BTreeMap<NodeName, Role>,
    /// Server (by its node label) → why it cannot be a node.
    pub unusable: BTreeMap<String, String>,
    /// Servers without a role (a Dart-format `servers.yaml`): each is what
    /// the command that names it says, a fleet node for `fleet …`, else a
    /// cluster node.
    pub unassigned: std::collections::BTreeSet<NodeName>,
}

/// Variables of an env file (a missing file has none), in the format
/// [`crate::envfile`] describes; a malformed line is refused, naming the
/// file and the line number.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, ClusterError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClusterError::Refused(format!("cannot read {}: {e}", path.display())))?;
    crate::envfile::parse(&text, |k| std::env::var(k).ok())
        .map_err(|e| ClusterError::Refused(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_env_file_is_refused_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".env"), "GOOD=1\nthis is not a line\n").unwrap();
        let e = Cluster::open(d.path(), None).unwrap_err();
        assert!(matches!(e, ClusterError::Refused(_)));
        let path = d.path().canonicalize().unwrap().join(".env");
        assert_eq!(
            e.to_string(),
            format!("{}: line 2: no `=` (expected KEY=VALUE)", path.display())
        );
    }

    #[test]
    fn a_dart_template_env_file_opens_and_secrets_pwd_is_the_passphrase() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(".env"),
            "# Certificate Authority\nCERT_COMPANY=Your Company Inc\nCA_PASS=\n\
             SECRETS_PWD=my_secrets_password\n",
        )
        .unwrap();
        let c = Cluster::open(d.path(), None).unwrap();
        assert_eq!(c.var("CERT_COMPANY").as_deref(), Some("Your Company Inc"));
        assert_eq!(c.var("CA_PASS"), None);
        let passphrase = |c: &Cluster| match c.secret_key().unwrap() {
            SecretKey::Passphrase(p) => {
                use age::secrecy::ExposeSecret;
                p.expose_secret().to_string()
            }
            SecretKey::Identity(_) => panic!("the identity, not a passphrase"),
        };
        // No identity here: the passphrase can only come from SECRETS_PWD.
        assert_eq!(passphrase(&c), "my_secrets_password");
        // SECRETS_PASS wins when both are there.
        std::fs::write(
            d.path().join(".env"),
            "SECRETS_PWD=older\nSECRETS_PASS=newer\n",
        )
        .unwrap();
        let c = Cluster::open(d.path(), None).unwrap();
        assert_eq!(passphrase(&c), "newer");
    }

    #[test]
    fn servers_yaml_selects_the_self_hosted_provider() {
        let d = tempfile::tempdir().unwrap();
        let c = Cluster::open(d.path(), None).unwrap();
        let e = c.provider().err().expect("no token, no servers.yaml");
        assert!(e.to_string().contains("HCLOUD_TOKEN is not set"), "{e}");
        std::fs::write(
            d.path().join("servers.yaml"),
            "servers:\n  - name: box1\n    ipv4: 127.0.0.9\n    role: ctrl\n",
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let inv = rt.block_on(c.inventory()).unwrap();
        assert_eq!(inv.nodes.get("box1"), Some(&Role::Ctrl));
        assert!(inv.unusable.is_empty());
        let e = c.need_cloud("`cluster provision`").unwrap_err().to_string();
        assert!(e.contains("servers.yaml wins over HCLOUD_TOKEN"), "{e}");
    }

    #[test]
    fn missing_init_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let c = Cluster::open(d.path(), None).unwrap();
        let e = c.need_init().unwrap_err().to_string();
        assert!(
            e.contains("keys/age.key") && e.contains("nix-infra init"),
            "{e}"
        );
        let e = c
            .need_types([Role::Ctrl, Role::Cluster])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node_types/control_node.nix, node_types/cluster_node.nix"),
            "{e}"
        );
    }
}
