//! The command line: global options and the command tree (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod cluster;
pub use cluster::*;

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
    /// The web dashboard (runs, DAGs, schedules, cluster health) and its JSON API.
    ///
    /// Starting, resuming and cancelling need `Authorization: Bearer TOKEN`
    /// (NIX_INFRA_API_TOKEN, or the one kept in DIR/.nix-infra/api-token).
    Serve {
        /// Address to listen on; loopback unless you put TLS in front.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
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
    /// Container images on the nodes.
    #[command(subcommand)]
    Registry(RegistryCommand),
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
    /// Print the OpenTelemetry trace id of a run (the same for every execution).
    Trace {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_tree_is_consistent() {
        // Catches clashing ids, globals shadowed by a command's own flags, bad defaults.
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
