//! `nix-infra cluster …` and `nix-infra fleet …`: node lifecycles and day-2
//! operations. Each command maps to a typed [`Request`] (`cluster_request`);
//! `ssh`, `port-forward` and `etcd` start no run (see `node_access`).
//!
//! The Dart nix-infra's spellings are accepted beside ours: its flag names
//! are aliases (`--node-names` for `--target`, `--machine-type` for
//! `--server-type`, …), `--batch` is accepted everywhere.

use super::etcd::EtcdArgs;
use crate::args::{ExecArgs, Global, RunArgs};
use crate::{Failure, start};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use workflows::domain::Role;

pub use super::cluster_request::{Direct, request};

/// `nix-infra cluster …`
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Provision every node, initialise the control nodes, then the others, and register them.
    ///
    /// Nodes are named ctrl1.., worker1.., ingress1... One run (`cluster.up`)
    /// does it all; a failing node does not stop the others, and `runs resume`
    /// continues where it stopped.
    Up {
        /// Control nodes (etcd).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=7))]
        ctrl: u32,
        /// Cluster nodes (apps).
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// Ingress nodes.
        #[arg(long, default_value_t = 1)]
        ingress: u32,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Create (or adopt) a server per node, wait for SSH, install NixOS, reboot into it and verify it.
    ///
    /// Runs `node.provision` as a durable run: if it fails or is interrupted,
    /// `runs resume` continues it, and servers that exist are adopted, never doubled.
    Provision {
        /// The nodes, space-separated: --target "node1 node2" (the Dart tool's --node-names).
        #[arg(long, alias = "node-names", required = true)]
        target: String,
        /// Their role: ctrl, cluster or ingress (`init-ctrl` makes a cluster node a control node).
        #[arg(long, default_value = "cluster")]
        role: Role,
        /// The Dart tool's --provider, which it ignores too: servers.yaml, if
        /// the repo has one, else Hetzner Cloud.
        #[arg(long, hide = true, value_name = "NAME")]
        provider: Option<String>,
        /// The Dart tool's nixos-infect "mutation": refused (nix-infra runs
        /// its pinned nixos-infect, or NIXOS_INFECT_URL with NIXOS_INFECT_SHA256).
        #[arg(long, hide = true, value_name = "NAME")]
        mutation: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Take over servers made by another tool (e.g. the Dart nix-infra): find
    /// them by name and label them as this cluster's nodes.
    ///
    /// Nodes named in --ctrl-nodes (default: CTRL_NODES) become control nodes; the rest get --role.
    Adopt {
        /// The servers' names, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// Role of the nodes not named in --ctrl-nodes.
        #[arg(long, default_value = "cluster")]
        role: Role,
        #[command(flatten)]
        ctrl: CtrlNodes,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Make provisioned nodes control nodes: certificates, control_node.nix, rebuild, etcd healthy.
    ///
    /// A target provisioned as a cluster node (the Dart tool's scripts
    /// provision every node alike) is labelled as a control node first.
    InitCtrl {
        /// The control nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        ctrl: CtrlConfig,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Upload control nodes' configuration again (control_node.nix, …) and rebuild.
    UpdateCtrl {
        /// The control nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        ctrl: CtrlConfig,
        #[command(flatten)]
        rebuild: Rebuild,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Initialise provisioned cluster or ingress nodes: certificates, overlay
    /// subnet, node type configuration, secrets, rebuild, confd, register.
    #[command(visible_alias = "init-machine")]
    InitNode {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// Service groups the nodes serve: the `services` list of their
        /// /cluster/nodes/<node> entry, which confd matches against
        /// /cluster/<group>/…. Words separated by spaces or commas, and the flag
        /// may repeat: --service-group "services backends". Default: `services`,
        /// what the Dart templates pass.
        #[arg(
            long = "service-group",
            visible_alias = "groups",
            value_name = "GROUPS"
        )]
        groups: Vec<String>,
        #[command(flatten)]
        node: NodeConfig,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Upload each node's configuration again (node type, nodes/<node>.nix, modules/), deploy its secrets, rebuild.
    #[command(visible_alias = "update")]
    UpdateNode {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        node: NodeConfig,
        #[command(flatten)]
        rebuild: Rebuild,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Upload app_modules/ and nodes/<node>.nix to each node and rebuild (same run as update-node).
    DeployApps {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// The Dart tool's test folder: the nodes' own files (nodes/<node>.nix) come from
        /// DIR/nodes, the rest from the repo; DIR is relative to -d, or absolute.
        #[arg(long, value_name = "DIR")]
        test_dir: Option<PathBuf>,
        #[command(flatten)]
        rebuild: Rebuild,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Take nodes out of the registry and release their overlay subnets (servers stay).
    Unregister {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Unregister nodes, delete their servers, revoke their certificates, forget their host keys.
    ///
    /// Asks for confirmation on a terminal unless --batch.
    Destroy {
        /// The nodes, space-separated: --target "node1 node2".
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        ctrl: CtrlNodes,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run a shell command on each node; shows each node's exit code and output.
    ///
    /// Exits non-zero if the command failed (or could not run) on any node.
    Cmd {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// Variables to export first, KEY=VALUE,… or @FILE (KEY=VALUE lines). The
        /// values travel encrypted and on stdin: never in argv, logs or output.
        #[arg(long, value_name = "KEY=VALUE,…|@FILE")]
        env_vars: Option<String>,
        /// Keep the SSH connections up this long once idle, so a `cmd` run
        /// again soon pays no handshake; 0 closes them when `cmd` ends. They
        /// live in a private directory outside the repo; `ssh-close` closes them.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        ssh_persist: u64,
        /// The command (its words are joined with spaces, as the Dart tool does).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run an app's action.sh on each node, as the Dart nix-infra does.
    ///
    /// This repo's app_modules/<app>/action.sh is uploaded to the node as
    /// /root/action.sh, run with bash (it need not be executable), and removed.
    Action {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// The app (app_modules/<app>/action.sh).
        #[arg(long, visible_alias = "app-module")]
        app: String,
        /// Arguments to action.sh as one string, split into words like a shell
        /// would (quotes, backslashes; nothing expanded): --cmd "create-db --database=hello".
        /// Given before the trailing arguments, if both are.
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        cmd: Option<String>,
        /// Variables for action.sh, KEY=VALUE,… or @FILE (KEY=VALUE lines).
        /// `[%%key%%]` in a value is filled with the node's value (the
        /// placeholders its configuration gets). The values travel encrypted
        /// and on stdin: never in argv, logs or output.
        #[arg(long, value_name = "KEY=VALUE,…|@FILE")]
        env_vars: Option<String>,
        /// Store the action's stdout as this secret instead of showing it (one node only).
        #[arg(long, value_name = "NAME")]
        save_as_secret: Option<String>,
        /// Arguments to action.sh.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Copy a local file or folder to a path on each node (--src, --dst), or
    /// files and folders into a folder there (--file, --remote-path).
    Upload {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// The local file or folder.
        #[arg(long, requires = "dst", conflicts_with = "files")]
        src: Option<PathBuf>,
        /// Where on the node.
        #[arg(long, requires = "src")]
        dst: Option<String>,
        /// Local files or folders, space-separated (the flag may repeat), each
        /// copied into --remote-path under its own name.
        #[arg(long = "file", value_name = "PATHS")]
        files: Vec<String>,
        /// The folder on the node --file copies into [default: /root/uploads].
        #[arg(long, value_name = "DIR", requires = "files")]
        remote_path: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Forward a local port to a port on a node (until Ctrl-C): on a cluster
    /// node to its overlay address, on a fleet node to its loopback.
    PortForward {
        /// The node.
        #[arg(long, required = true)]
        target: String,
        /// Local port (on 127.0.0.1).
        #[arg(long)]
        local_port: u16,
        /// Port on the node (its overlay address; a fleet node's loopback).
        #[arg(long)]
        remote_port: u16,
        /// Accepted (nothing is asked).
        #[arg(long)]
        batch: bool,
    },
    /// Open a shell on a node (or run COMMAND there), with the cluster's key and pinned host key.
    Ssh {
        /// The node.
        #[arg(long, required = true)]
        target: String,
        /// Accepted (nothing is asked).
        #[arg(long)]
        batch: bool,
        /// A command instead of a shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Close the SSH connections `cmd` kept open for this cluster (--ssh-persist).
    SshClose,
    /// Read the registry (etcd), or run etcdctl on a control node.
    Etcd(EtcdArgs),
    /// Collect garbage in each node's Nix store.
    Gc {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Upgrade NixOS, --batch-size nodes at a time; a failed batch stops the rest.
    UpgradeNixos {
        /// The nodes, space-separated, in the order to upgrade them.
        #[arg(long, required = true)]
        target: String,
        /// Nodes per batch [default: 1].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: Option<u32>,
        /// Never ask (the Dart tool's --batch). With a number, the batch size
        /// (its earlier spelling: --batch 2).
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "N")]
        batch: Option<String>,
        /// Switch each node to this release's channel first (nixos-<VERSION>)
        /// where it runs another, as the Dart tool does; then upgrade.
        #[arg(long, value_name = "VERSION")]
        nixos_version: Option<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Switch each node back to its previous NixOS generation.
    Rollback {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// What servers to create.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Hetzner server type (the Dart tool's --machine-type).
    #[arg(long, alias = "machine-type", default_value = "cx22")]
    pub server_type: String,
    /// Image to start from (NixOS is installed over it).
    #[arg(long, default_value = "ubuntu-24.04")]
    pub image: String,
    /// Hetzner location (default: Hetzner's choice).
    #[arg(long)]
    pub location: Option<String>,
    /// NixOS release to install, e.g. 24.11 (channel nixos-24.11) [default: 24.11].
    #[arg(long, value_name = "VERSION")]
    pub nixos_version: Option<String>,
    /// The spread placement group to put the servers in, created if missing
    /// [default: <cluster>-spread].
    #[arg(long, value_name = "NAME")]
    pub placement_group: Option<String>,
}

/// `--ctrl-nodes`.
#[derive(Args, Debug, Clone)]
pub struct CtrlNodes {
    /// The cluster's control nodes, space-separated [default: CTRL_NODES]:
    /// each must be one (on servers.yaml, a server without a role named
    /// here is one).
    #[arg(long, value_name = "NODES")]
    pub ctrl_nodes: Option<String>,
}

/// What a control node's configuration renders with.
#[derive(Args, Debug, Clone)]
pub struct CtrlConfig {
    /// The release `[%%nixVersion%%]` (and system.stateVersion) render with
    /// [default: 24.11]; it does not change the node's channel (upgrade-nixos does).
    #[arg(long, value_name = "VERSION")]
    pub nixos_version: Option<String>,
    /// etcd's initial cluster token, `[%%etcdClusterToken%%]` [default: CLUSTER_UUID,
    /// else nix-infra-<cluster>].
    #[arg(long, value_name = "TOKEN")]
    pub cluster_uuid: Option<String>,
}

/// What a cluster (or fleet) node's configuration renders with.
#[derive(Args, Debug, Clone)]
pub struct NodeConfig {
    #[command(flatten)]
    pub ctrl: CtrlNodes,
    /// The node type to deploy: node_types/cluster_node.nix, ingress_node.nix,
    /// control_node.nix or fleet_node.nix. A node's type follows its role, so
    /// it must be the targets' (a servers.yaml server without a role takes it).
    #[arg(long, value_name = "FILE", value_parser = node_module)]
    pub node_module: Option<Role>,
    /// The release `[%%nixVersion%%]` (and system.stateVersion) render with
    /// [default: 24.11]; it does not change the node's channel (upgrade-nixos does).
    #[arg(long, value_name = "VERSION")]
    pub nixos_version: Option<String>,
}

fn node_module(path: &str) -> Result<Role, String> {
    workflows::request::node_module(path)
}

/// `--rebuild` / `--no-rebuild`.
#[derive(Args, Debug, Clone, Copy)]
pub struct Rebuild {
    /// Rebuild after the upload: the default (accepted for the Dart tool's scripts).
    #[arg(long, overrides_with = "no_rebuild")]
    pub rebuild: bool,
    /// Upload only: no rebuild, no confd restart (a later rebuild activates it).
    #[arg(long, overrides_with = "rebuild")]
    pub no_rebuild: bool,
}

impl Rebuild {
    /// Whether to rebuild: yes unless --no-rebuild came last.
    pub fn rebuilds(self) -> bool {
        !self.no_rebuild
    }
}

/// Runs one `cluster` (or, with `fleet`, `fleet`) subcommand.
pub async fn run(global: Global, cmd: ClusterCommand, fleet: bool) -> Result<(), Failure> {
    let started = match request(cmd, fleet)? {
        Ok(started) => started,
        Err(direct) => return super::node_access::run(&global, direct, fleet).await,
    };
    workflows::node::persist_connections(started.ssh_persist);
    let checked =
        start::check_or_adopt(&global, started.request, started.batch, &started.exec).await?;
    start::confirm(&checked, started.batch)?;
    start::start(global, checked, &started.exec).await
}
