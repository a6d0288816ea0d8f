//! The command line: the top of the tree and the options every command shares.
//! Each subcommand's own arguments live in its file under `command/`.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The end of `nix-infra --help`.
pub const AFTER_HELP: &str = "\
Exit status:
  0  the command (and the run it started) succeeded
  1  the run failed or was cancelled
  2  bad usage or input (nothing was written)
  3  the database could not be opened or used

State lives in DATABASE_URL (postgres://… for teams and CI) or, by default,
in the SQLite file .nix-infra/state.db under the working directory.";

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The cluster directory (holds .env, nodes/, and .nix-infra/state.db;
    /// also --project-dir, as the Dart tool's MCP servers take it).
    #[arg(
        short = 'd',
        long,
        alias = "project-dir",
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
    #[arg(
        long,
        global = true,
        env = "NIX_INFRA_LEASE_TTL",
        hide_env_values = true,
        default_value_t = 30,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub lease_ttl: u64,

    /// The env file with HCLOUD_TOKEN, SECRETS_PASS, … [default: DIR/.env].
    /// A relative FILE is relative to DIR, as in the Dart tool (else, if
    /// there is none there, to the current directory); an absolute one stays.
    #[arg(long, global = true, value_name = "FILE")]
    pub env: Option<PathBuf>,

    /// More diagnostics on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The same as -vv (the Dart tool's --debug).
    #[arg(long, global = true)]
    pub debug: bool,

    /// The Dart tool's SSH key name, over SSH_KEY: when DIR/ssh/NAME exists,
    /// nix-infra logs in with it and names it NAME at the provider; else
    /// with its own keys/id_ed25519, named nix-infra-<cluster> (a
    /// servers.yaml entry's ssh_key wins for that server).
    #[arg(long, global = true, value_name = "NAME")]
    pub ssh_key: Option<String>,
}

impl Global {
    /// How verbose stderr is: -v counted, --debug as -vv.
    pub fn verbosity(&self) -> u8 {
        if self.debug {
            self.verbose.max(2)
        } else {
            self.verbose
        }
    }

    /// The env file `--env` names: a relative path under DIR (the Dart
    /// tool's meaning), else under the current directory when only that one
    /// exists; an absolute path as it is.
    pub fn env_file(&self) -> Option<PathBuf> {
        let f = self.env.as_ref()?;
        if f.is_absolute() {
            return Some(f.clone());
        }
        let under_dir = self.working_dir.join(f);
        if !under_dir.exists() && f.exists() {
            return Some(f.clone());
        }
        Some(under_dir)
    }
}

/// Result formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Tables and sentences for people.
    Text,
    /// JSON for scripts; with commands that run something, the last line.
    Json,
}

/// Options of commands that start a run: how to execute it, and `--batch`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// How the run executes.
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Never ask (for scripts and CI; the Dart tool's --batch).
    #[arg(long)]
    pub batch: bool,
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
