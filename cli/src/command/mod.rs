//! One file per subcommand: its clap arguments and its `run`. Adding a
//! subcommand is a file here and a line in [`Command`] and [`run`].

pub mod app;
pub mod check;
pub mod cluster;
mod cluster_request;
#[cfg(test)]
mod dart_cli_tests;
pub mod demo;
pub mod etcd;
pub mod init;
pub mod mcp;
mod node_access;
pub mod plan;
pub mod registry;
pub mod runs;
pub mod sandbox;
pub mod schedule;
pub mod secrets;
pub mod serve;
pub mod ssh_key;
pub mod worker;
pub mod workflows;

use crate::Failure;
use crate::args::{AFTER_HELP, Global};
use clap::{Parser, Subcommand};

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

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start, inspect and control durable runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// List the workflows this build can run.
    Workflows,
    /// Execute queued runs and fire schedules until SIGTERM (run several, anywhere,
    /// against one Postgres).
    Worker(worker::WorkerArgs),
    /// The web dashboard (runs, DAGs, schedules, cluster health) and its JSON API.
    ///
    /// Starting, resuming and cancelling need `Authorization: Bearer TOKEN`
    /// (NIX_INFRA_API_TOKEN, or the one kept in DIR/.nix-infra/api-token).
    Serve(serve::ServeArgs),
    /// Start runs on a cron schedule (a worker fires them).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Create the cluster's age identity, SSH key and CA in the working directory.
    ///
    /// Never overwrites anything that exists; running it again is safe.
    Init(init::InitArgs),
    /// Check every node's configuration as a run would before it starts:
    /// placeholders, Nix syntax, secrets. Exit status 2 on any problem.
    Check(check::CheckArgs),
    /// Manage the cluster's SSH key, locally and at the provider.
    #[command(subcommand)]
    SshKey(ssh_key::SshKeyCommand),
    /// Print the DAG a command would run, without running it; with --run-id
    /// of an existing run, also which of its steps are done.
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Store and read the cluster's age-encrypted secrets (SECRETS_PASS or the identity).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// A local stand-in for Hetzner Cloud whose servers are sshd "nodes" on loopback (needs root).
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Node lifecycles and day-2 operations on the cluster in the working directory.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The same commands for fleet nodes: NixOS machines outside the overlay
    /// and the registry (node type node_types/fleet_node.nix; the Dart tool's
    /// `fleet init-machine` and `fleet update` are init-node and update-node).
    #[command(subcommand)]
    Fleet(cluster::ClusterCommand),
    /// App lifecycles: register, deploy, register-instance, unregister-instance, remove, unregister.
    #[command(subcommand)]
    App(app::AppCommand),
    /// Container images on the nodes.
    Registry(registry::RegistryArgs),
    /// Read the registry (etcd), or run etcdctl on a control node (the same as `cluster etcd`).
    Etcd(etcd::EtcdArgs),
    /// An MCP server for AI agents (stdio, or HTTP with --listen): the Dart
    /// nix-infra MCP servers' tools and nix-infra's runs; read-only unless
    /// --allow-changes, and then every change is a durable run.
    Mcp(mcp::McpArgs),
    /// Try it: on the local sandbox, bring up a cluster (1 ctrl, 2 workers,
    /// 1 ingress) from the example repo, show it, destroy it.
    ///
    /// Needs root (the sandbox's nodes). Uses -d DIR, or ./nix-infra-demo.
    Demo(demo::DemoArgs),
}

/// Runs one command.
pub async fn run(global: Global, command: Command) -> Result<(), Failure> {
    match command {
        Command::Runs(cmd) => runs::run(global, cmd).await,
        Command::Workflows => workflows::run(&global),
        Command::Worker(args) => worker::run(global, args).await,
        Command::Serve(args) => serve::run(global, args).await,
        Command::Schedule(cmd) => schedule::run(global, cmd).await,
        Command::Init(args) => init::run(&global, args),
        Command::Check(args) => check::run(&global, args).await,
        Command::SshKey(cmd) => ssh_key::run(&global, cmd).await,
        Command::Plan(cmd) => plan::run(&global, cmd).await,
        Command::Secrets(cmd) => secrets::run(global, cmd).await,
        Command::Sandbox(cmd) => sandbox::run(&global, cmd).await,
        Command::Cluster(cmd) => cluster::run(global, cmd, false).await,
        Command::Fleet(cmd) => cluster::run(global, cmd, true).await,
        Command::App(cmd) => app::run(global, cmd).await,
        Command::Registry(cmd) => registry::run(global, cmd).await,
        Command::Etcd(args) => etcd::run(global, args).await,
        Command::Mcp(args) => mcp::run(global, args).await,
        Command::Demo(args) => demo::run(&global, args).await,
    }
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
