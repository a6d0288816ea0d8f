//! `nix-infra cluster …` and `nix-infra fleet …`: node lifecycles and day-2
//! operations. Each command maps to a typed [`Request`]; `ssh`,
//! `port-forward` and `etcd` start no run (see `node_access`).

use crate::args::{ExecArgs, Global};
use crate::{Failure, start};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use workflows::domain::Role;
use workflows::request::{Request, ServerOptions};

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
        exec: ExecArgs,
    },
    /// Create (or adopt) a server per node, wait for SSH, install NixOS, reboot into it and verify it.
    ///
    /// Runs `node.provision` as a durable run: if it fails or is interrupted,
    /// `runs resume` continues it, and servers that exist are adopted, never doubled.
    Provision {
        /// The nodes, space-separated: --target "node1 node2".
        #[arg(long, required = true)]
        target: String,
        /// Their role: ctrl, cluster or ingress.
        #[arg(long, default_value = "cluster")]
        role: Role,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Take over servers made by another tool (e.g. the Dart nix-infra): find
    /// them by name and label them as this cluster's nodes.
    ///
    /// Nodes named in CTRL_NODES (env file) become control nodes; the rest get --role.
    Adopt {
        /// The servers' names, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// Role of the nodes not named in CTRL_NODES.
        #[arg(long, default_value = "cluster")]
        role: Role,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Make provisioned nodes control nodes: certificates, control_node.nix, rebuild, etcd healthy.
    InitCtrl {
        /// The control nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Initialise provisioned cluster or ingress nodes: certificates, overlay
    /// subnet, node type configuration, secrets, rebuild, confd, register.
    InitNode {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// Service groups the nodes serve: the `services` list of their
        /// /cluster/nodes/<node> entry, which confd matches against
        /// /cluster/<group>/…. Words separated by spaces or commas, and the flag
        /// may repeat: --service-group "services backends". Default: `services`,
        /// what the Dart templates pass (the Dart tool has none).
        #[arg(
            long = "service-group",
            visible_alias = "groups",
            value_name = "GROUPS"
        )]
        groups: Vec<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Upload each node's configuration again (node type, nodes/<node>.nix, modules/), deploy its secrets, rebuild.
    UpdateNode {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Upload app_modules/ and nodes/<node>.nix to each node and rebuild (same run as update-node).
    DeployApps {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Take nodes out of the registry and release their overlay subnets (servers stay).
    Unregister {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Unregister nodes, delete their servers, revoke their certificates, forget their host keys.
    ///
    /// Asks for confirmation on a terminal unless --batch.
    Destroy {
        /// The nodes, space-separated: --target "node1 node2".
        #[arg(long, required = true)]
        target: String,
        /// Do not ask (for scripts and CI).
        #[arg(long)]
        batch: bool,
        #[command(flatten)]
        exec: ExecArgs,
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
        /// The command.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        #[command(flatten)]
        exec: ExecArgs,
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
        exec: ExecArgs,
    },
    /// Copy a local file or folder to a path on each node.
    Upload {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// The local file or folder.
        #[arg(long)]
        src: PathBuf,
        /// Where on the node.
        #[arg(long)]
        dst: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Forward a local port to a port on a node (until Ctrl-C).
    PortForward {
        /// The node.
        #[arg(long, required = true)]
        target: String,
        /// Local port (on 127.0.0.1).
        #[arg(long)]
        local_port: u16,
        /// Port on the node's loopback.
        #[arg(long)]
        remote_port: u16,
    },
    /// Open a shell on a node (or run COMMAND there), with the cluster's key and pinned host key.
    Ssh {
        /// The node.
        #[arg(long, required = true)]
        target: String,
        /// A command instead of a shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Read the registry (etcd).
    Etcd {
        /// What to show.
        #[arg(value_enum)]
        what: EtcdWhat,
    },
    /// Collect garbage in each node's Nix store.
    Gc {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Upgrade NixOS, --batch nodes at a time; a failed batch stops the rest.
    UpgradeNixos {
        /// The nodes, space-separated, in the order to upgrade them.
        #[arg(long, required = true)]
        target: String,
        /// Nodes per batch.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Switch each node back to its previous NixOS generation.
    Rollback {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
}

/// What `cluster etcd` shows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdWhat {
    /// Registered nodes.
    Nodes,
    /// Internal services and their instances.
    Services,
    /// Backends and their instances.
    Backends,
    /// Frontends and their instances.
    Frontends,
    /// Overlay subnets (flannel leases).
    Network,
}

/// What servers to create.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Hetzner server type.
    #[arg(long, default_value = "cx22")]
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
}

impl From<ServerArgs> for ServerOptions {
    fn from(s: ServerArgs) -> Self {
        ServerOptions {
            server_type: s.server_type,
            image: s.image,
            location: s.location,
            nixos_version: s.nixos_version,
        }
    }
}

/// Runs one `cluster` (or, with `fleet`, `fleet`) subcommand.
pub async fn run(global: Global, cmd: ClusterCommand, fleet: bool) -> Result<(), Failure> {
    let batch = matches!(cmd, ClusterCommand::Destroy { batch: true, .. });
    let (request, exec) = match request(cmd, fleet) {
        Ok(started) => started,
        Err(direct) => return super::node_access::run(&global, *direct).await,
    };
    let checked = start::check(&global, request).await?;
    start::confirm(&checked, batch)?;
    start::start(global, checked, &exec).await
}

/// The request a command makes and its execution options; a command that
/// starts no run comes back as it is.
pub fn request(
    cmd: ClusterCommand,
    fleet: bool,
) -> Result<(Request, ExecArgs), Box<ClusterCommand>> {
    use ClusterCommand as C;
    Ok(match cmd {
        C::Up {
            ctrl,
            workers,
            ingress,
            server,
            exec,
        } => {
            let server = server.into();
            let r = Request::Up {
                ctrl,
                workers,
                ingress,
                server,
                fleet,
            };
            (r, exec)
        }
        C::Provision {
            target,
            role,
            server,
            exec,
        } => {
            let server = server.into();
            (
                Request::Provision {
                    target,
                    role,
                    fleet,
                    server,
                },
                exec,
            )
        }
        C::Adopt { target, role, exec } => (
            Request::Adopt {
                target,
                role,
                fleet,
            },
            exec,
        ),
        C::InitCtrl { target, exec } => (Request::InitCtrl { target, fleet }, exec),
        C::InitNode {
            target,
            groups,
            exec,
        } => (
            Request::InitNode {
                target,
                groups,
                fleet,
            },
            exec,
        ),
        C::UpdateNode { target, exec } => (Request::UpdateNode { target, fleet }, exec),
        C::DeployApps { target, exec } => (Request::DeployApps { target, fleet }, exec),
        C::Unregister { target, exec } => (Request::Unregister { target, fleet }, exec),
        C::Destroy { target, exec, .. } => (Request::Destroy { target, fleet }, exec),
        C::Cmd {
            target,
            env_vars,
            command,
            exec,
        } => {
            let command = command.join(" ");
            (
                Request::Cmd {
                    target,
                    fleet,
                    command,
                    env_vars,
                },
                exec,
            )
        }
        C::Action {
            target,
            app,
            cmd,
            env_vars,
            save_as_secret,
            args,
            exec,
        } => {
            let r = Request::Action {
                target,
                fleet,
                app,
                cmd,
                args,
                env_vars,
                save_as_secret,
            };
            (r, exec)
        }
        C::Upload {
            target,
            src,
            dst,
            exec,
        } => (
            Request::Upload {
                target,
                fleet,
                src,
                dst,
            },
            exec,
        ),
        C::Gc { target, exec } => (Request::Gc { target, fleet }, exec),
        C::UpgradeNixos {
            target,
            batch,
            exec,
        } => (
            Request::UpgradeNixos {
                target,
                fleet,
                batch,
            },
            exec,
        ),
        C::Rollback { target, exec } => (Request::Rollback { target, fleet }, exec),
        direct @ (C::PortForward { .. } | C::Ssh { .. } | C::Etcd { .. }) => {
            return Err(Box::new(direct));
        }
    })
}
