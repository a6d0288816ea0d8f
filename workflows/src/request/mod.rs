//! Typed requests: one per command that starts a run, with every check it
//! needs before a run exists.
//!
//! The CLI maps its arguments to a [`Request`]; the HTTP API
//! (`POST /api/runs`) deserializes the same type from JSON. Both then call
//! [`Request::check`], so they accept exactly the same things and refuse the
//! rest with the same messages. Checking writes nothing: what a run needs
//! written first (the variables of `cmd --env-vars`) comes back in
//! [`Checked`] for the caller to store once it starts the run.
//!
//! ```text
//!   clap args ─┐                       ┌─► Checked { workflow, input, run_id, run_secret, confirm }
//!              ├─► Request ─► check ───┤
//!   JSON body ─┘   (serde)   (reads)   └─► ClusterError::Refused (exit 2, HTTP 400)
//! ```
//!
//! ```
//! use workflows::request::Request;
//! let r: Request = serde_json::from_str(r#"{"request": "init-node", "target": "worker1"}"#).unwrap();
//! assert!(matches!(r, Request::InitNode { .. }));
//! let bad = serde_json::from_str::<Request>(r#"{"request": "init-node", "targte": "x"}"#);
//! assert!(bad.unwrap_err().to_string().contains("unknown field `targte`"));
//! ```

mod action;
mod adopt;
mod app;
mod flags;
mod node;
mod resume;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_flags;

pub use flags::node_module;
pub use node::{env_vars_text, targets, up_nodes};
pub use resume::{forget_run_secret, may_have_run, uncertain_steps};

use crate::cluster::{Cluster, ClusterError};
use crate::domain::Role;
use age::secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tasks::secrets::SecretError;

/// What servers to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerOptions {
    /// Hetzner server type.
    pub server_type: String,
    /// Image to start from (NixOS is installed over it).
    pub image: String,
    /// Location (default: the provider's choice).
    pub location: Option<String>,
    /// The NixOS release to install, as the Dart tool's `--nixos-version`
    /// takes it (`24.11`, or `unstable`): channel `nixos-<version>`
    /// (default [`crate::node::DEFAULT_CHANNEL`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nixos_version: Option<String>,
    /// The spread placement group to create servers in (created if missing;
    /// default `<cluster>-spread`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            server_type: "cx22".into(),
            image: "ubuntu-24.04".into(),
            location: None,
            nixos_version: None,
            placement_group: None,
        }
    }
}

impl ServerOptions {
    /// The NixOS channel to install: `nixos-<nixos_version>`, or the default.
    pub fn channel(&self) -> Result<String, ClusterError> {
        channel_of(self.nixos_version.as_deref())
    }
}

/// The NixOS channel of a `--nixos-version` (`24.11` → `nixos-24.11`, also
/// `unstable`), or the default channel for none.
pub fn channel_of(nixos_version: Option<&str>) -> Result<String, ClusterError> {
    let Some(v) = nixos_version else {
        return Ok(crate::node::DEFAULT_CHANNEL.into());
    };
    let release = v.trim();
    let release = release.strip_prefix("nixos-").unwrap_or(release);
    let numbered = release.len() == 5
        && release.as_bytes()[2] == b'.'
        && release
            .bytes()
            .enumerate()
            .all(|(k, b)| k == 2 || b.is_ascii_digit());
    if numbered || release == "unstable" {
        Ok(format!("nixos-{release}"))
    } else {
        Err(refused(format!(
            "--nixos-version {v}: give a NixOS release such as 24.11 (or unstable)"
        )))
    }
}

/// A command that starts a run. `target` is a space-separated list of node
/// names, as on the command line; `fleet` selects the fleet's nodes instead
/// of the cluster's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum Request {
    /// `cluster up`: provision and initialise ctrl1.., worker1.., ingress1...
    Up {
        #[serde(default = "one")]
        ctrl: u32,
        #[serde(default = "two")]
        workers: u32,
        #[serde(default = "one")]
        ingress: u32,
        #[serde(default)]
        server: ServerOptions,
        #[serde(default)]
        fleet: bool,
    },
    /// `cluster provision`.
    Provision {
        target: String,
        #[serde(default = "cluster_role")]
        role: Role,
        #[serde(default)]
        fleet: bool,
        #[serde(default)]
        server: ServerOptions,
    },
    /// `cluster adopt`: label servers another tool made; the control nodes
    /// (`ctrl_nodes`, else CTRL_NODES) become control nodes.
    Adopt {
        target: String,
        #[serde(default = "cluster_role")]
        role: Role,
        #[serde(default)]
        fleet: bool,
        /// The control nodes, space-separated (the Dart tool's `--ctrl-nodes`;
        /// default: CTRL_NODES).
        #[serde(default)]
        ctrl_nodes: Option<String>,
    },
    /// `cluster init-ctrl`: the targets become control nodes (a target
    /// provisioned as a cluster node is labelled as a control node first).
    InitCtrl {
        target: String,
        #[serde(default)]
        fleet: bool,
        /// The release the configuration renders with (`[%%nixVersion%%]`).
        #[serde(default)]
        nixos_version: Option<String>,
        /// etcd's initial cluster token (`[%%etcdClusterToken%%]`; default: CLUSTER_UUID).
        #[serde(default)]
        cluster_uuid: Option<String>,
    },
    /// `cluster update-ctrl`: re-render and upload control nodes' configuration.
    UpdateCtrl {
        target: String,
        #[serde(default)]
        fleet: bool,
        #[serde(default)]
        nixos_version: Option<String>,
        #[serde(default)]
        cluster_uuid: Option<String>,
        /// Rebuild after the upload (default: yes).
        #[serde(default = "yes")]
        rebuild: bool,
    },
    /// `cluster init-node`.
    InitNode {
        target: String,
        /// Service groups: each entry split on spaces and commas
        /// (`["services backends"]` is two); none means `services`.
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default)]
        fleet: bool,
        #[serde(default)]
        ctrl_nodes: Option<String>,
        /// The node type the targets must have (the Dart tool's `--node-module`).
        #[serde(default)]
        node_type: Option<Role>,
        #[serde(default)]
        nixos_version: Option<String>,
    },
    /// `cluster update-node`.
    UpdateNode {
        target: String,
        #[serde(default)]
        fleet: bool,
        #[serde(default)]
        ctrl_nodes: Option<String>,
        #[serde(default)]
        node_type: Option<Role>,
        #[serde(default)]
        nixos_version: Option<String>,
        #[serde(default = "yes")]
        rebuild: bool,
    },
    /// `cluster deploy-apps` (the same run as update-node).
    DeployApps {
        target: String,
        #[serde(default)]
        fleet: bool,
        #[serde(default = "yes")]
        rebuild: bool,
        /// Take `nodes/<node>.nix` from `<test_dir>/nodes` (the Dart tool's `--test-dir`).
        #[serde(default)]
        test_dir: Option<PathBuf>,
    },
    /// `cluster unregister`.
    Unregister {
        target: String,
        #[serde(default)]
        fleet: bool,
    },
    /// `cluster destroy`.
    Destroy {
        target: String,
        #[serde(default)]
        fleet: bool,
        #[serde(default)]
        ctrl_nodes: Option<String>,
    },
    /// `cluster cmd`.
    Cmd {
        target: String,
        #[serde(default)]
        fleet: bool,
        command: String,
        /// `KEY=VALUE,…` or `@FILE`.
        #[serde(default)]
        env_vars: Option<String>,
    },
    /// `cluster action`.
    Action {
        target: String,
        #[serde(default)]
        fleet: bool,
        app: String,
        /// The Dart tool's `--cmd`: split into words like a shell (quotes,
        /// backslashes; nothing expanded), before `args`.
        #[serde(default)]
        cmd: Option<String>,
        #[serde(default)]
        args: Vec<String>,
        /// `KEY=VALUE,…` or `@FILE`; `[%%key%%]` in a value is the node's.
        #[serde(default)]
        env_vars: Option<String>,
        #[serde(default)]
        save_as_secret: Option<String>,
    },
    /// `cluster upload`: `src` to `dst`, or (the Dart tool's form) each of
    /// `files` into the folder `remote_path` (default `/root/uploads`).
    Upload {
        target: String,
        #[serde(default)]
        fleet: bool,
        #[serde(default)]
        src: Option<PathBuf>,
        #[serde(default)]
        dst: Option<String>,
        #[serde(default)]
        files: Vec<PathBuf>,
        #[serde(default)]
        remote_path: Option<String>,
    },
    /// `cluster gc`.
    Gc {
        target: String,
        #[serde(default)]
        fleet: bool,
    },
    /// `cluster upgrade-nixos`.
    UpgradeNixos {
        target: String,
        #[serde(default)]
        fleet: bool,
        #[serde(default = "one")]
        batch: u32,
        /// Switch to this release's channel first where the node runs another.
        #[serde(default)]
        nixos_version: Option<String>,
    },
    /// `cluster rollback`.
    Rollback {
        target: String,
        #[serde(default)]
        fleet: bool,
    },
    /// `app register`.
    AppRegister {
        app: String,
        #[serde(default = "backend")]
        kind: String,
        port: u16,
        #[serde(default)]
        env_prefix: Option<String>,
        /// `KEY=VALUE` entries.
        #[serde(default)]
        env: Vec<String>,
    },
    /// `app deploy`.
    AppDeploy {
        app: String,
        #[serde(default = "backend")]
        kind: String,
        target: String,
    },
    /// `app remove`.
    AppRemove {
        app: String,
        #[serde(default = "backend")]
        kind: String,
        target: String,
    },
    /// `app register-instance`.
    AppRegisterInstance {
        app: String,
        #[serde(default = "backend")]
        kind: String,
        target: String,
    },
    /// `app unregister-instance`.
    AppUnregisterInstance {
        app: String,
        #[serde(default = "backend")]
        kind: String,
        target: String,
    },
    /// `app unregister`.
    AppUnregister {
        app: String,
        #[serde(default = "backend")]
        kind: String,
    },
    /// `registry publish-image`.
    PublishImage {
        file: PathBuf,
        #[serde(default)]
        target: Option<String>,
        /// The Dart tool's `--image-name` (a push to the node's registry).
        #[serde(default)]
        image_name: Option<String>,
        #[serde(default)]
        image_tag: Option<String>,
        #[serde(default)]
        use_localhost: bool,
    },
    /// `secrets rotate`.
    RotateSecret {
        name: String,
        #[serde(default = "thirty_two")]
        bytes: usize,
        /// `APP@NODE`: the new value is that action's stdout.
        #[serde(default)]
        from_action: Option<String>,
        #[serde(default)]
        action_args: Vec<String>,
    },
    /// `runs start` and schedules: any workflow with its input as JSON,
    /// checked by the workflow's own planner.
    Workflow {
        workflow: String,
        #[serde(default = "empty_object")]
        input: serde_json::Value,
    },
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn two() -> u32 {
    2
}
fn thirty_two() -> usize {
    32
}
fn cluster_role() -> Role {
    Role::Cluster
}
fn backend() -> String {
    "backend".into()
}
fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// Where a request runs: the cluster repo and its env file.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The cluster directory.
    pub dir: PathBuf,
    /// The env file (`--env`), if not `DIR/.env`.
    pub env_file: Option<PathBuf>,
    /// Whether `@FILE` arguments (`cmd --env-vars @FILE`) may read files of
    /// this machine: yes for the CLI, no for a request over HTTP.
    pub local_files: bool,
    /// The Dart nix-infra's key name (`--ssh-key`), over `SSH_KEY`.
    pub ssh_key: Option<String>,
}

impl Origin {
    /// The cluster repo, opened now.
    pub fn cluster(&self) -> Result<Cluster, ClusterError> {
        let c = Cluster::open(&self.dir, self.env_file.as_deref())?;
        Ok(match &self.ssh_key {
            Some(k) => c.with_setting(crate::cluster::Setting::SshKey, k),
            None => c,
        })
    }
}

/// A request that passed its checks: the run to start.
#[derive(Debug)]
pub struct Checked {
    /// The workflow.
    pub workflow: String,
    /// Its input.
    pub input: serde_json::Value,
    /// The run id to start it under (given, or made for a run that needs one first).
    pub run_id: Option<String>,
    /// A secret this run needs stored first, and removed once it succeeds.
    pub run_secret: Option<RunSecret>,
    /// A question to put to a person before starting (destroy), if any.
    pub confirm: Option<String>,
}

/// A secret made for one run only (the variables of `cmd --env-vars`).
pub struct RunSecret {
    /// Its name in the cluster's store.
    pub name: String,
    value: SecretString,
    dir: PathBuf,
    env_file: Option<PathBuf>,
}

impl std::fmt::Debug for RunSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunSecret({}: [redacted])", self.name)
    }
}

impl RunSecret {
    fn cluster(&self) -> Result<Cluster, ClusterError> {
        Cluster::open(&self.dir, self.env_file.as_deref())
    }

    /// Stores it (age-encrypted) in the cluster's secret store.
    pub fn store(&self) -> Result<(), ClusterError> {
        let value = SecretSlice::from(self.value.expose_secret().as_bytes().to_vec());
        self.cluster()?
            .secrets()?
            .store(&self.name, &value)
            .map(|_| ())
            .map_err(|e| match e {
                SecretError::BadName(_) => ClusterError::Refused(e.to_string()),
                other => ClusterError::Unavailable(format!("cannot store {}: {other}", self.name)),
            })
    }

    /// Removes it; a secret already gone is fine, any other failure is
    /// reported as a warning (the run is over; the secret stays encrypted).
    pub fn forget(&self) {
        let removed = self
            .cluster()
            .and_then(|c| c.secrets())
            .map_err(|e| e.to_string())
            .and_then(|store| match store.remove(&self.name) {
                Ok(()) | Err(SecretError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.to_string()),
            });
        if let Err(e) = removed {
            tracing::warn!(secret = %self.name, "cannot remove the run's secret: {e}");
            eprintln!("warning: cannot remove the run's secret {}: {e}", self.name);
        }
    }
}

impl Request {
    /// Checks the request against the cluster repo at `origin` (and its
    /// provider, for commands that name existing nodes) and returns the run
    /// to start. Writes nothing.
    pub async fn check(
        self,
        origin: &Origin,
        run_id: Option<String>,
    ) -> Result<Checked, ClusterError> {
        if let Some(id) = &run_id {
            engine::validate_run_id(id).map_err(|e| ClusterError::Refused(e.to_string()))?;
        }
        let checked = match self {
            Request::Workflow { workflow, input } => Checked {
                workflow,
                input,
                run_id,
                run_secret: None,
                confirm: None,
            },
            Request::PublishImage { .. }
            | Request::RotateSecret { .. }
            | Request::AppRegister { .. }
            | Request::AppDeploy { .. }
            | Request::AppRemove { .. }
            | Request::AppRegisterInstance { .. }
            | Request::AppUnregisterInstance { .. }
            | Request::AppUnregister { .. } => app::check(self, &origin.cluster()?, run_id).await?,
            other => node::check(other, &origin.cluster()?, run_id, origin.local_files).await?,
        };
        plan(&checked.workflow, &checked.input)?;
        Ok(checked)
    }
}

/// The plan `workflow` makes of `input`, or why it refuses it.
pub fn plan(workflow: &str, input: &serde_json::Value) -> Result<engine::Plan, ClusterError> {
    let registry = crate::registry();
    let w = registry.get(workflow).ok_or_else(|| {
        let known: Vec<String> = registry.iter().map(|w| w.name().to_string()).collect();
        let e = engine::EngineError::UnknownWorkflow {
            name: workflow.to_string(),
            known,
        };
        ClusterError::Refused(e.to_string())
    })?;
    w.plan(input)
        .map_err(|e| ClusterError::Refused(engine::EngineError::from(e).to_string()))
}

/// The input every node workflow starts from.
fn base_input(c: &Cluster, nodes: Vec<crate::node::NodeInput>) -> crate::node::NodesInput {
    crate::node::NodesInput {
        nodes,
        ..crate::node::NodesInput::of(c)
    }
}

fn refused(message: impl Into<String>) -> ClusterError {
    ClusterError::Refused(message.into())
}

/// The run input as JSON, in the shape earlier builds stored: server
/// options only where servers are created, the channel only when it is not
/// the default. Inputs are compared when a `--run-id` is given again, so a
/// command repeated across an upgrade finds the run an earlier build started.
fn to_json(i: &crate::node::NodesInput, creates_servers: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(i).expect("a run input serializes");
    if let Some(fields) = v.as_object_mut() {
        if !creates_servers {
            for k in ["server_type", "image", "location", "placement_group"] {
                fields.remove(k);
            }
        }
        if i.channel == crate::node::DEFAULT_CHANNEL {
            fields.remove("channel");
        }
    }
    v
}

/// A workflow's typed `args` as the run input carries them.
fn args_json(args: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(args).expect("workflow args serialize")
}

fn canonical(path: &Path, flag: &str) -> Result<PathBuf, ClusterError> {
    std::fs::canonicalize(path).map_err(|e| refused(format!("{flag} {}: {e}", path.display())))
}
