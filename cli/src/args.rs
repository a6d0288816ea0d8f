//! The command line: global options and the command tree (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit status:
  0  the command (and the run it started) succeeded
  1  the run failed or was cancelled
  2  bad usage or input (nothing was written)
  3  the database could not be opened or used

State lives in DATABASE_URL (postgres://… for teams and CI) or, by default,
in the SQLite file .nix-infra/state.db under the working directory.";

/// nix-infra: a private PaaS on Hetzner Cloud and NixOS, driven by durable runs.
///
/// Every lifecycle is a run: a DAG of steps whose results are persisted, so a
/// run can be resumed after a crash, from another machine or from CI.
#[derive(Parser, Debug)]
#[command(name = "nix-infra", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The cluster directory (holds .env, nodes/, and .nix-infra/state.db).
    #[arg(
        short = 'd',
        long,
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub working_dir: PathBuf,

    /// Where runs are stored: postgres://USER@HOST:PORT/DB or sqlite://PATH.
    /// [default: sqlite://DIR/.nix-infra/state.db]
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Id for the run this command starts; starting again with the same id
    /// returns (or continues) that run instead of starting another.
    #[arg(long, global = true, value_name = "ID")]
    pub run_id: Option<String>,

    /// Output format for results on stdout (progress always goes to stderr).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Seconds a run's lease lasts without renewal: how soon another process
    /// may take over a run whose executor died.
    #[arg(long, global = true, env = "NIX_INFRA_LEASE_TTL", hide_env_values = true, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_ttl: u64,

    /// The env file with HCLOUD_TOKEN, SECRETS_PASS, … [default: DIR/.env]
    #[arg(long, global = true, value_name = "FILE")]
    pub env: Option<PathBuf>,

    /// More diagnostics on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Result formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Tables and sentences for people.
    Text,
    /// JSON for scripts; with commands that run something, the last line.
    Json,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start, inspect and control durable runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List the workflows this build can run.
    Workflows,
    /// Execute queued runs and fire schedules until SIGTERM (run several, anywhere,
    /// against one Postgres).
    Worker {
        /// Most runs executing at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// The queue to take runs from.
        #[arg(long, default_value = "nix-infra")]
        queue: String,
    },
    /// Start runs on a cron schedule (a worker fires them).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Create the cluster's age identity, SSH key and CA in the working directory.
    ///
    /// Never overwrites anything that exists; running it again is safe.
    Init {
        /// The cluster's name (labels, certificate names); default: the directory's name.
        #[arg(long)]
        cluster: Option<String>,
        /// Also write the example cluster repo (node_types/, nodes/, modules/,
        /// app_modules/) where those files are missing.
        #[arg(long)]
        example: bool,
        /// Never prompt (init asks nothing; accepted as the Dart tool did).
        #[arg(long)]
        batch: bool,
    },
    /// Manage the cluster's SSH key, locally and at the provider.
    #[command(subcommand)]
    SshKey(SshKeyCommand),
    /// Print the DAG a command would run, without running it; with --run-id
    /// of an existing run, also which of its steps are done.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Store and read the cluster's age-encrypted secrets (SECRETS_PASS or the identity).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// A local stand-in for Hetzner Cloud whose servers are sshd "nodes" on loopback (needs root).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Node lifecycles and day-2 operations on the cluster in the working directory.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The same commands for fleet nodes: NixOS machines outside the overlay
    /// and the registry (node type node_types/fleet_node.nix).
    #[command(subcommand)]
    Fleet(ClusterCommand),
    /// App lifecycles: register, deploy, register-instance, unregister-instance, remove, unregister.
    #[command(subcommand)]
    App(AppCommand),
    /// Try it: on the local sandbox, bring up a cluster (1 ctrl, 2 workers,
    /// 1 ingress) from the example repo, show it, destroy it.
    ///
    /// Needs root (the sandbox's nodes). Uses -d DIR, or ./nix-infra-demo.
    Demo {
        /// Leave the nodes and the sandbox running afterwards.
        #[arg(long)]
        keep: bool,
    },
}

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
    /// Create (or adopt) a server per node, wait for SSH, install NixOS and verify it.
    ///
    /// Runs `node.provision` as a durable run: if it fails or is interrupted,
    /// `runs resume` continues it, and servers that exist are adopted, never doubled.
    Provision {
        /// The nodes, space-separated: --target "node1 node2".
        #[arg(long, required = true)]
        target: String,
        /// Their role: ctrl, cluster or ingress.
        #[arg(long, default_value = "cluster")]
        role: String,
        #[command(flatten)]
        server: ServerArgs,
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
        /// Service groups the nodes serve, comma-separated (default: their role).
        #[arg(long, value_delimiter = ',')]
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
    /// Run an app's action.sh on each node.
    Action {
        /// The nodes, space-separated.
        #[arg(long, required = true)]
        target: String,
        /// The app (app_modules/<app>/action.sh).
        #[arg(long)]
        app: String,
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

/// `nix-infra app …`
#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register the app's meta_data (publish port, env prefix, env).
    Register {
        #[command(flatten)]
        app: AppArgs,
        /// The port it publishes.
        #[arg(long)]
        port: u16,
        /// Prefix of the variables other apps get for it (default: APP in upper case).
        #[arg(long)]
        env_prefix: Option<String>,
        /// Extra environment, KEY=VALUE (repeatable).
        #[arg(long = "env-var", value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Upload the app and nodes/<node>.nix to each node, deploy its secrets, rebuild.
    Deploy {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes (their nodes/<node>.nix must import app_modules/<app>).
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Register an instance of the app on each node.
    RegisterInstance {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Remove the app's instance on each node from the registry.
    UnregisterInstance {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Take the app off each node: unregister its instance, rebuild without it, prune its secrets.
    Remove {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes (their nodes/<node>.nix must no longer import the app).
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Remove the app from the registry: its meta_data and every instance.
    Unregister {
        #[command(flatten)]
        app: AppArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
}

/// Which app.
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    /// The app (its folder under app_modules/).
    #[arg(long)]
    pub app: String,
    /// Where it is registered: service, backend or frontend.
    #[arg(long, default_value = "backend")]
    pub kind: String,
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
}

/// `nix-infra ssh-key …`
#[derive(Subcommand, Debug)]
pub enum SshKeyCommand {
    /// Create the cluster's SSH key (keys/id_ed25519) if there is none.
    Create,
    /// Upload the cluster's public key to the provider (adopting an identical one).
    Add,
    /// Delete the cluster's key from the provider (servers keep theirs).
    Remove,
}

/// `nix-infra plan …`
#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// The plan of a cluster command.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The plan of a fleet command.
    #[command(subcommand)]
    Fleet(ClusterCommand),
    /// The plan of an app command.
    #[command(subcommand)]
    App(AppCommand),
}

/// `nix-infra sandbox …`
#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Start the sandbox in the background and point DIR/.env at it.
    Up,
    /// Stop the sandbox and every node it booted; take it out of DIR/.env.
    Down,
    /// Say whether the sandbox runs, and where.
    Status,
    /// Run the sandbox in the foreground (what `up` starts).
    #[command(hide = true)]
    Serve {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// `nix-infra secrets …`
#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Store a secret (from --secret-file, or stdin; --secret works but shows in `ps`).
    Store {
        /// The secret's name.
        #[arg(long)]
        name: String,
        /// The value (visible to other users in the process list).
        #[arg(long, conflicts_with = "secret_file")]
        secret: Option<String>,
        /// A file holding the value.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// Print a secret's current value to stdout.
    Get {
        /// The secret's name.
        #[arg(long)]
        name: String,
    },
    /// List secrets and their versions (never their values).
    List,
    /// Delete a secret and all its versions.
    Remove {
        /// The secret's name.
        #[arg(long)]
        name: String,
    },
    /// Rotate a secret as a durable run (secret.rotate): stage a new version,
    /// deploy it where it is used, restart, verify, retire the old one.
    Rotate {
        /// The secret's name.
        #[arg(long)]
        name: String,
        /// Random bytes of a generated value (hex-encoded).
        #[arg(long, default_value_t = 32, conflicts_with = "from_action")]
        bytes: usize,
        /// Take the new value from an app's action: APP@NODE, with --action-arg for its arguments.
        #[arg(long, value_name = "APP@NODE")]
        from_action: Option<String>,
        /// Arguments to the action (repeatable).
        #[arg(long = "action-arg", requires = "from_action")]
        action_args: Vec<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
}

/// `nix-infra schedule …`
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Add a schedule; every fire time starts exactly one run.
    Add {
        /// Unique name (A-Z a-z 0-9 . _ -).
        name: String,
        /// Cron expression: 5 fields, or 6 with seconds first ("*/10 * * * * *").
        #[arg(long)]
        cron: String,
        /// Time zone the expression is read in (IANA name).
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// The workflow each fire starts.
        #[arg(long)]
        workflow: String,
        /// Its input as JSON.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        input: String,
        /// Fire times missed while no worker ran: skip them, or fire once for the latest.
        #[arg(long, value_enum, default_value_t = CatchUpArg::Skip)]
        catch_up: CatchUpArg,
        /// Resources each run locks, comma-separated (e.g. node/worker1).
        #[arg(long, value_delimiter = ',')]
        resources: Vec<String>,
    },
    /// List schedules.
    List,
    /// Stop a schedule from firing.
    Pause {
        /// The schedule.
        name: String,
    },
    /// Let a paused schedule fire again.
    Resume {
        /// The schedule.
        name: String,
    },
    /// Delete a schedule (its runs stay).
    Remove {
        /// The schedule.
        name: String,
    },
    /// The runs a schedule started, one per fire time.
    History {
        /// The schedule.
        name: String,
    },
}

/// `--catch-up` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpArg {
    /// Drop missed fire times.
    Skip,
    /// Fire once for the latest missed fire time.
    Once,
}

/// `nix-infra runs …`
#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Start a run of WORKFLOW and execute it here, showing progress.
    ///
    /// Exits 0 only if the run succeeded. Press Ctrl-C to cancel; the run can
    /// be resumed later with `runs resume`.
    Start {
        /// The workflow, e.g. diag.chain (see `nix-infra workflows`).
        workflow: String,
        /// The run input as JSON.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        input: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Continue a failed, cancelled or abandoned run; completed steps are kept.
    ///
    /// If the run's previous executor died, this waits for its lease to lapse
    /// (at most --lease-ttl of the dead process). Exits 0 only if the run then
    /// succeeds. With --failed, resumes every failed or abandoned run (for CI).
    Resume {
        /// The run (or use --failed).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        id: Option<String>,
        /// Resume every failed or abandoned run, oldest first.
        #[arg(long)]
        failed: bool,
        /// With --failed: only runs of this workflow.
        #[arg(long, requires = "failed")]
        workflow: Option<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Ask a run to stop: in-flight steps are told to stop, no new step starts.
    Cancel {
        /// The run.
        id: String,
    },
    /// Start a new run that keeps the outputs of every step not downstream
    /// of STEP and re-runs STEP and everything after it.
    Fork {
        /// The run to fork.
        id: String,
        /// The first step to run again.
        #[arg(long, value_name = "STEP")]
        from_step: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs with these statuses (pending, running, succeeded, failed, cancelled).
        #[arg(long, value_delimiter = ',')]
        status: Vec<engine::RunStatus>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a run: every step with its attempts, durations and errors.
    Show {
        /// The run.
        id: String,
    },
    /// Print a run's log lines.
    Logs {
        /// The run.
        id: String,
        /// Only this step's lines.
        #[arg(long)]
        step: Option<String>,
    },
    /// Print a run's plan as a Mermaid flowchart coloured by step status.
    Graph {
        /// The run.
        id: String,
    },
}

/// Options of commands that execute a run.
#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Queue the run for a worker (`nix-infra worker`), print its id and return.
    #[arg(long)]
    pub detach: bool,
    /// The queue a detached run goes to.
    #[arg(long, default_value = "nix-infra")]
    pub queue: String,
    /// Most steps of the run executing at once (steps mostly wait on the network).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
}
