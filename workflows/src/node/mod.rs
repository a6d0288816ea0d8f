//! Node lifecycles: `node.provision`, `node.init`, `node.update`,
//! `node.unregister`, `node.destroy`, and `cluster.up`, which chains them.
//!
//! Every node workflow takes one input shape, [`NodesInput`]. A per-node
//! step is named `<kind>/<node>` and has the node as its subject
//! ([`engine::StepSpec::subject()`]), so a run fans out per node, a failed
//! node blocks only its own later stages, and a summary can say which node
//! failed where. Each step kind is an [`engine::Step`] (see [`kinds`]): its
//! params and output are types, so a dependent reads what its dependency
//! returned as that type. Credentials are read when a step runs
//! (environment, then the cluster's `.env`), never stored with a run.

mod access;
mod action;
pub mod app;
mod cluster;
pub(crate) mod dart;
mod dart_config;
mod day2;
mod init;
mod install;
mod membership;
mod overlay;
mod provision;
mod reach;
mod rotate;
mod stage;
mod steps;
#[cfg(test)]
mod tests;

pub use action::{NODE_SCRIPT, action, script_path};
pub(crate) use action::{may_name, placeholders, var_names};
pub use cluster::up;
pub use dart::{DartValues, is_dart_layout, staged_source as dart_staged_source};
pub(crate) use dart_config::{base_node_values, cluster_token};
pub use day2::{MAY_HAVE_RUN, cmd, gc, publish_image, rollback, upgrade, upload};
pub use init::{init, unregister, update};
pub use overlay::overlay_network;
pub use provision::{adopt, destroy, provision};
pub use reach::{Reach, nix_string, state_version};
pub use rotate::rotate;
pub(crate) use stage::{Peers, node_vars};
pub use stage::{
    node_apps, node_type_file, referenced_secrets, secret_references, stage_config, stage_files,
    staged_source,
};
pub use steps::{NODE_CERTS, open_registry, open_registry_at};

/// The `args` of the workflows that take them, as run inputs carry them.
pub mod args {
    pub use super::action::ActionArgs;
    pub use super::app::AppArgs;
    pub use super::day2::{CmdArgs, Copy, PublishArgs, UpgradeArgs, UploadArgs};
    pub use super::init::UpdateArgs;
    pub use super::rotate::{FromAction, RotateArgs};
}

/// Every step kind of the node workflows, with its output type.
pub mod kinds {
    pub use super::NodeParams;
    pub use super::action::Action;
    pub use super::app::{
        AppRegistered, AppUnregistered, Forget as ForgetApp, Instance, Instanced, Meta, Uninstance,
        Uninstanced,
    };
    pub use super::day2::{Cmd, Exit, Gc, Loaded, Publish, Rollback, Upgrade, Upload, Uploaded};
    pub use super::install::{Install, Installed, Reboot, Rebooted, Verified, Verify};
    pub use super::provision::{
        Adopt, Create, Delete, Deleted, Forget, Forgotten, Prepare, Prepared, Relabel, Revoke,
        Revoked,
    };
    pub use super::steps::{
        Certs, Confd, Config, Configured, Ctrl, Deployed, Endpoints, Etcd, Healthy, Issued, Locate,
        Located, Overlay, Rebuild, Register, Registered, Restarted, Secrets, Server, Subnet,
        Switched, Unregister, Unregistered,
    };
}

use crate::cluster::Cluster;
use crate::domain::{NodeName, Role};
use engine::{RetryPolicy, Step, StepContext, StepError, StepSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tasks::provider::{Provider, ProviderError, ServerInfo};
use tasks::ssh::{Pool, Remote, SshConfig, SshError};
use tasks::ssh_masters::{Persist, control_dir_for};

/// One node of a run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    /// Node name (also the server's name).
    pub name: NodeName,
    /// `ctrl`, `cluster` (the default), `ingress`, or `fleet` (no overlay, no registry).
    #[serde(default = "default_role")]
    pub role: Role,
    /// Service groups the node serves, as [`ServiceGroup`](crate::domain::ServiceGroup)
    /// names (checked by the request that made the input; kept as strings so
    /// inputs stored by earlier builds, which took any text, still decode).
    /// Empty: [`ServiceGroup::DEFAULT`](crate::domain::ServiceGroup::DEFAULT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Whether its server is labelled with `role` first (`relabel/<node>`):
    /// a node provisioned as a cluster node that `init-ctrl` makes a control
    /// node, as the Dart tool's scripts do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relabel: bool,
}

impl NodeInput {
    /// Whether the node runs etcd.
    pub fn is_ctrl(&self) -> bool {
        self.role.is_ctrl()
    }

    /// Whether the node is a fleet node: NixOS managed by nix-infra, outside the overlay and registry.
    pub fn is_fleet(&self) -> bool {
        self.role.is_fleet()
    }

    /// The service groups it registers with: its `groups`, else `services`
    /// as in the Dart templates. (Builds before this one used the node's role;
    /// a run they stored registers with `services` when it is resumed now.)
    pub fn service_groups(&self) -> Vec<String> {
        if self.groups.is_empty() {
            vec![crate::domain::ServiceGroup::DEFAULT.to_string()]
        } else {
            self.groups.clone()
        }
    }
}

fn default_role() -> Role {
    Role::Cluster
}

/// The input every node workflow takes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodesInput {
    /// Cluster name (server labels, certificate names).
    pub cluster: String,
    /// The cluster directory: keys, CA, `.env`, `nodes/`, `node_types/`, ….
    pub dir: PathBuf,
    /// The env file to read (default: `DIR/.env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// The nodes.
    pub nodes: Vec<NodeInput>,
    /// Server type.
    #[serde(default = "default_type")]
    pub server_type: String,
    /// Image to start from before NixOS is installed.
    #[serde(default = "default_image")]
    pub image: String,
    /// Location.
    #[serde(default)]
    pub location: Option<String>,
    /// NixOS channel to install.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The placement group servers are created in (default `<cluster>-spread`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
    /// Variables the command set on its command line ([`crate::cluster::Setting`]:
    /// `CTRL_NODES`, `CLUSTER_UUID`), over the environment and the env file.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settings: std::collections::BTreeMap<String, String>,
    /// Where `nodes/<node>.nix` come from, if not `DIR/nodes` (the Dart
    /// tool's `deploy-apps --test-dir`: `<test dir>/nodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_dir: Option<PathBuf>,
    /// What a day-2 workflow does, in its own shape (`node.cmd`: the command, …).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
}

impl NodesInput {
    /// The folder of the nodes' own files (`nodes/<node>.nix`).
    pub fn nodes_dir(&self) -> PathBuf {
        self.nodes_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("nodes"))
    }

    /// Decodes `args` into a workflow's own type.
    pub fn args<T: serde::de::DeserializeOwned>(&self) -> Result<T, StepError> {
        T::deserialize(&self.args).map_err(|e| StepError::permanent(format!("args: {e}")))
    }
}

fn default_type() -> String {
    "cx22".into()
}
fn default_image() -> String {
    "ubuntu-24.04".into()
}
/// The NixOS channel installed when a run names none.
pub const DEFAULT_CHANNEL: &str = "nixos-24.11";

fn default_channel() -> String {
    DEFAULT_CHANNEL.into()
}

impl NodesInput {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeInput, StepError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| StepError::permanent(format!("node `{name}` is not in the run")))
    }

    /// The input of a run on `c` with no nodes yet, and the default server options.
    pub fn of(c: &Cluster) -> NodesInput {
        NodesInput {
            cluster: c.name.clone(),
            dir: c.dir.clone(),
            env_file: c.env_file.clone(),
            nodes: Vec::new(),
            server_type: default_type(),
            image: default_image(),
            location: None,
            channel: default_channel(),
            placement_group: None,
            settings: c.settings().clone(),
            nodes_dir: None,
            args: serde_json::Value::Null,
        }
    }

    /// The run's cluster repo, read now: a step sees the env file as it is
    /// when the step runs, and credentials are never stored with the run.
    pub fn repo(&self) -> Result<Cluster, StepError> {
        Cluster::open_for_run(&self.dir, self.env_file.as_deref())
            .map(|c| c.named(&self.cluster).with_settings(&self.settings))
            .map_err(StepError::permanent)
    }

    /// `key` from the environment, else from the env file.
    pub fn env(&self, key: &str) -> Option<String> {
        self.repo().ok()?.var(key)
    }

    /// Where the cluster's servers come from (Hetzner, or `servers.yaml`).
    pub fn provider(&self) -> Result<Arc<dyn Provider>, StepError> {
        self.repo()?.provider().map_err(StepError::permanent)
    }

    /// The cluster's servers, as the provider lists them.
    pub async fn servers(&self) -> Result<Vec<ServerInfo>, StepError> {
        self.provider()?
            .list_servers(&self.cluster)
            .await
            .map_err(provider_error)
    }
}

/// How the cluster's nodes are reached over SSH (the key of
/// [`Cluster::ssh_key`], the repo's default env file).
pub fn ssh_config(dir: &Path) -> SshConfig {
    match Cluster::open(dir, None) {
        Ok(c) => ssh_config_for(&c),
        Err(_) => ssh_config_with(dir, dir.join("keys").join("id_ed25519")),
    }
}

/// How cluster `c`'s nodes are reached over SSH.
pub fn ssh_config_for(c: &Cluster) -> SshConfig {
    ssh_config_with(&c.dir, c.ssh_key().private)
}

fn ssh_config_with(dir: &Path, key: PathBuf) -> SshConfig {
    SshConfig {
        key: Some(key),
        known_hosts: dir.join("ssh").join("known_hosts"),
        // Control sockets need a short path.
        control_dir: std::env::temp_dir().join(format!("nixinfra-{}", std::process::id())),
        user: "root".into(),
        port: 22,
        connect_timeout: Duration::from_secs(10),
        persist: Some(kept_connections(dir)).filter(|p| !p.idle.is_zero()),
    }
}

/// How long, in seconds, this process's SSH masters stay up for the next
/// process once it is done with them; 0 closes them at exit.
static SSH_PERSIST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Keep this process's SSH masters for later processes until they are idle
/// for `idle` (`cmd --ssh-persist`); zero closes them when it is done.
pub fn persist_connections(idle: Duration) {
    SSH_PERSIST.store(idle.as_secs(), std::sync::atomic::Ordering::Relaxed);
}

/// The SSH masters kept for the cluster in `dir` (`cmd --ssh-persist`).
pub fn kept_connections(dir: &Path) -> Persist {
    Persist {
        dir: control_dir_for(dir),
        idle: Duration::from_secs(SSH_PERSIST.load(std::sync::atomic::Ordering::Relaxed)),
    }
}

pub(crate) fn provider_error(e: ProviderError) -> StepError {
    if e.is_retryable() {
        StepError::retryable(e)
    } else {
        StepError::permanent(e)
    }
}

pub(crate) fn ssh_error(e: SshError) -> StepError {
    if e.is_retryable() {
        StepError::retryable(e)
    } else {
        StepError::permanent(e)
    }
}

/// The params of a per-node step: the node, and for provisioning its role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeParams {
    /// The node the step acts on.
    pub node: NodeName,
    /// Its role (the steps that create servers carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// The step's node, from its [`NodeParams`].
pub(crate) fn node_param(ctx: &StepContext) -> Result<NodeName, StepError> {
    Ok(ctx.params::<NodeParams>()?.node)
}

/// The node's public address, from the dependency that found its server:
/// the run's `locate`, or `create/<node>`.
pub(crate) fn address(ctx: &StepContext) -> Result<String, StepError> {
    let node = node_param(ctx)?;
    let located = ctx
        .outputs::<kinds::Locate>()?
        .into_iter()
        .find_map(|(_, l)| l.servers.get(&node)?.ipv4.clone());
    let created = step_name::<kinds::Create>(&node);
    let ip = match located {
        Some(ip) => Some(ip),
        None if ctx.deps.contains_key(&created) => ctx.output::<kinds::Create>(&created)?.ipv4,
        None => None,
    };
    ip.ok_or_else(|| {
        StepError::permanent(format!(
            "no address known for node {node} (has it a server? provision it first)"
        ))
    })
}

/// This process's SSH connections, shared by the steps of every run it executes.
pub(crate) static CONNECTIONS: std::sync::LazyLock<Pool> = std::sync::LazyLock::new(Pool::default);

/// Closes this process's idle SSH connections to nodes; call it before the process exits.
pub async fn close_connections() {
    CONNECTIONS.close_all().await;
}

/// An SSH connection to the step's node (shared, or new once it answers),
/// with the server's own login if it has one ([`login`]).
pub(crate) async fn remote(ctx: &StepContext, i: &NodesInput) -> Result<Arc<Remote>, StepError> {
    let node = node_param(ctx)?;
    let ip = address(ctx)?;
    let cfg = node_ssh_config(ctx, i)?;
    CONNECTIONS
        .get(&cfg, node.as_str(), &ip, Duration::from_secs(300))
        .await
        .map_err(ssh_error)
}

/// How the step's node is reached: the repo's settings with the node's own
/// login, if it has one ([`login`]).
pub(crate) fn node_ssh_config(ctx: &StepContext, i: &NodesInput) -> Result<SshConfig, StepError> {
    let mut cfg = ssh_config_for(&i.repo()?);
    if let Some(l) = login(ctx)? {
        cfg.key = Some(l.key);
        cfg.user = l.user;
    }
    Ok(cfg)
}

/// The step's node's own SSH login, from the dependency that found its
/// server (a `servers.yaml` entry's `ssh_key` and `username`).
pub(crate) fn login(ctx: &StepContext) -> Result<Option<tasks::provider::Login>, StepError> {
    let node = node_param(ctx)?;
    let located = ctx
        .outputs::<kinds::Locate>()?
        .into_iter()
        .find_map(|(_, l)| l.servers.get(&node)?.login.clone());
    let created = step_name::<kinds::Create>(&node);
    Ok(match located {
        Some(l) => Some(l),
        None if ctx.deps.contains_key(&created) => ctx.output::<kinds::Create>(&created)?.login,
        None => None,
    })
}

/// The lock of every node a run touches: `node/<name>`.
pub(crate) fn node_resources(input: &serde_json::Value) -> Vec<String> {
    input["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(|n| format!("node/{n}")))
        .collect()
}

/// The name of node `node`'s step of kind `S`: `<kind>/<node>`.
pub(crate) fn step_name<S: Step>(node: &NodeName) -> String {
    format!("{}/{node}", S::KIND)
}

/// Step `<kind>/<node>` of kind `S` acting on `node`, with the lifecycle retry policy.
pub(crate) fn node_step<S: Step<Params = NodeParams>>(node: &NodeName) -> StepSpec {
    node_step_with::<S>(NodeParams {
        node: node.clone(),
        role: None,
    })
}

/// [`node_step`] with params `p`.
pub(crate) fn node_step_with<S: Step<Params = NodeParams>>(p: NodeParams) -> StepSpec {
    StepSpec::of::<S>(step_name::<S>(&p.node), &p)
        .on(p.node.as_str())
        .retry(lifecycle_retry())
}

/// The run's one step of kind `S`, named after its kind, with the lifecycle retry policy.
pub(crate) fn single<S: Step<Params = ()>>() -> StepSpec {
    StepSpec::of::<S>(S::KIND, &()).retry(lifecycle_retry())
}

/// The retry policy of steps that talk to the provider or the nodes.
pub(crate) fn lifecycle_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff_ms: 1_000,
        ..RetryPolicy::default()
    }
}

/// Decodes a run input; a bad node name or role is reported with its node.
pub(crate) fn decode_input(input: &serde_json::Value) -> Result<NodesInput, String> {
    NodesInput::deserialize(input).map_err(|e| {
        let nodes = input["nodes"].as_array().into_iter().flatten();
        let name = |n: &serde_json::Value| n["name"].as_str().unwrap_or("?").to_string();
        for n in nodes {
            if let Some(Err(bad)) = n["name"].as_str().map(NodeName::new) {
                return bad.to_string();
            }
            if let Some(Err(bad)) = n["role"].as_str().map(str::parse::<Role>) {
                return format!(
                    "node `{}` has role `{}`; roles are ctrl, cluster, ingress and fleet",
                    name(n),
                    bad.0
                );
            }
        }
        e.to_string()
    })
}

/// Parses a run input, as a planner error.
pub(crate) fn parse_input(input: &serde_json::Value) -> Result<NodesInput, engine::PlanError> {
    let i = decode_input(input).map_err(engine::PlanError::Input)?;
    if i.nodes.is_empty() {
        return Err(engine::PlanError::Input("no nodes in the input".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in &i.nodes {
        if !seen.insert(&n.name) {
            return Err(engine::PlanError::Input(format!(
                "node `{}` is listed twice",
                n.name
            )));
        }
    }
    Ok(i)
}
