//! The `nix-infra` binary: parses the command line, opens the state, runs the command.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod cluster;
mod day2;
mod demo;
mod example;
mod health;
mod lifecycle;
mod prepare;
mod progress;
mod runs;
mod sandbox;
mod schedules;
mod serve;
mod summary;
mod views;
mod worker;

use args::{Cli, Command, Global, Output};
use clap::Parser;
use engine::{Engine, EngineConfig, EngineError, StoreError};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A failure with the exit status it maps to (see `nix-infra --help`).
#[derive(Debug)]
pub enum Failure {
    /// The run finished but did not succeed (exit 1); already reported.
    RunNotSucceeded,
    /// Something went wrong (exit 1).
    Other(anyhow::Error),
    /// Bad usage or input; nothing was written (exit 2).
    Usage(anyhow::Error),
    /// The database could not be opened or used (exit 3).
    Database(anyhow::Error),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownWorkflow { .. }
            | EngineError::Plan(_)
            | EngineError::InvalidRunId(_)
            | EngineError::RunIdConflict { .. }
            | EngineError::UnknownStep { .. }
            | EngineError::Store(StoreError::NotFound(_)) => Failure::Usage(e.into()),
            EngineError::Store(StoreError::Database(_)) => Failure::Database(e.into()),
            other => Failure::Other(other.into()),
        }
    }
}

impl From<storage::ConnectError> for Failure {
    fn from(e: storage::ConnectError) -> Self {
        match e {
            storage::ConnectError::InvalidUrl { .. } => Failure::Usage(e.into()),
            _ => Failure::Database(e.into()),
        }
    }
}

/// This process's trace exporter, if OTEL_EXPORTER_OTLP_* configures one.
static TRACES: std::sync::OnceLock<Option<Arc<observability::traces::RunTraces>>> =
    std::sync::OnceLock::new();

/// What every command works with.
pub struct Context {
    /// Global options.
    pub global: Global,
    /// The engine over the opened store.
    pub engine: Engine,
    /// The database URL in use.
    pub url: String,
}

impl Context {
    async fn open(global: Global) -> Result<Self, Failure> {
        let url = match &global.database_url {
            Some(u) if !u.trim().is_empty() => u.clone(),
            _ => storage::default_url(&global.working_dir),
        };
        let store = storage::connect(&url).await?;
        let config = EngineConfig::default().lease_ttl(Duration::from_secs(global.lease_ttl));
        let mut engine = Engine::new(Arc::new(store), workflows::registry()).with_config(config);
        if let Some(traces) = TRACES.get().cloned().flatten() {
            engine = engine.watch(traces.watcher());
        }
        Ok(Context {
            global,
            engine,
            url,
        })
    }

    /// Whether results are JSON.
    pub fn json(&self) -> bool {
        self.global.output == Output::Json
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Workflows => {
            let registry = workflows::registry();
            if cli.global.output == Output::Json {
                let list: Vec<_> = registry
                    .iter()
                    .map(|w| serde_json::json!({"name": w.name(), "version": w.version(), "about": w.description()}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for w in registry.iter() {
                    println!("{:<16} v{}  {}", w.name(), w.version(), w.description());
                }
            }
            Ok(())
        }
        Command::Init {
            cluster,
            example,
            batch: _,
        } => {
            let dir = &cli.global.working_dir;
            let name = cluster.unwrap_or_else(|| {
                std::fs::canonicalize(dir)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
                    .unwrap_or_else(|| "cluster".into())
            });
            cluster::init(dir, &name, cli.global.output)?;
            if example {
                cluster::init_example(dir, cli.global.output)?;
            }
            Ok(())
        }
        Command::SshKey(cmd) => cluster::ssh_key(&cli.global, cmd).await,
        Command::Plan(cmd) => lifecycle::plan(&cli.global, &cmd).await,
        Command::Cluster(cmd) => cluster_command(cli.global, cmd, false).await,
        Command::Fleet(cmd) => cluster_command(cli.global, cmd, true).await,
        Command::Registry(args::RegistryCommand::PublishImage { file, target, exec }) => {
            let prepared = prepare::publish_run(&cli.global, &file, target.as_deref()).await?;
            start_prepared(cli.global, prepared, &exec).await
        }
        Command::App(cmd) => {
            let (prepared, exec) = prepare::app_run(&cli.global, &cmd).await?;
            start_prepared(cli.global, prepared, &exec).await
        }
        Command::Demo { keep } => demo::run(&cli.global, keep).await,
        Command::Sandbox(cmd) => {
            let dir = &cli.global.working_dir;
            match cmd {
                args::SandboxCommand::Up => sandbox::up(dir, cli.global.output),
                args::SandboxCommand::Down => sandbox::down(dir, cli.global.output),
                args::SandboxCommand::Status => sandbox::status(dir, cli.global.output),
                args::SandboxCommand::Serve { listen } => sandbox::serve(listen).await,
            }
        }
        Command::Secrets(args::SecretsCommand::Rotate {
            name,
            bytes,
            from_action,
            action_args,
            exec,
        }) => {
            let prepared =
                cluster::rotate_run(&cli.global, &name, bytes, from_action, action_args)?;
            start_prepared(cli.global, prepared, &exec).await
        }
        Command::Secrets(cmd) => cluster::secrets(&cli.global.working_dir, cmd, cli.global.output),
        Command::Serve { listen } => {
            let ctx = Context::open(cli.global).await?;
            serve::run(&ctx, listen).await
        }
        Command::Worker { concurrency, queue } => {
            let ctx = Context::open(cli.global).await?;
            worker::run(&ctx, concurrency as usize, &queue).await
        }
        Command::Schedule(cmd) => {
            schedules::check_add(&cmd)?;
            let ctx = Context::open(cli.global).await?;
            schedules::run(&ctx, cmd).await
        }
        Command::Runs(cmd) => {
            // Reject a bad workflow or input before the database is even opened,
            // so a typo leaves nothing behind.
            if let args::RunsCommand::Start {
                workflow, input, ..
            } = &cmd
            {
                runs::check_start(workflow, input, cli.global.run_id.as_deref())?;
            }
            let ctx = Context::open(cli.global).await?;
            runs::run(&ctx, cmd).await
        }
    }
}

/// `nix-infra cluster …` and `nix-infra fleet …`.
async fn cluster_command(
    mut global: Global,
    cmd: args::ClusterCommand,
    fleet: bool,
) -> Result<(), Failure> {
    if let Some(done) = day2::direct(&global, &cmd).await {
        return done;
    }
    let prepared = prepare::cluster_run(&mut global, &cmd, fleet, false).await?;
    lifecycle::confirm(&cmd, &prepared.input)?;
    let exec = prepare::exec_of(&cmd)
        .cloned()
        .expect("a command that starts a run");
    start_prepared(global, prepared, &exec).await
}

/// Starts a prepared run here (or queues it) and reports it; removes the
/// run's own secret once the run succeeded.
async fn start_prepared(
    global: Global,
    prepared: prepare::Prepared,
    exec: &args::ExecArgs,
) -> Result<(), Failure> {
    let check = runs::check_start(
        prepared.workflow,
        &prepared.input.to_string(),
        global.run_id.as_deref(),
    );
    let dir = global.working_dir.clone();
    let forget = |name: &Option<String>| {
        if let Some(name) = name
            && let Ok(key) = cluster::secret_key(&dir)
        {
            let _ = tasks::secrets::SecretStore::new(dir.join("secrets"), key).remove(name);
        }
    };
    if let Err(e) = check {
        forget(&prepared.run_secret);
        return Err(e);
    }
    let ctx = Context::open(global).await?;
    let result = lifecycle::start(&ctx, prepared.workflow, prepared.input, exec).await;
    if result.is_ok() && !exec.detach {
        forget(&prepared.run_secret);
    }
    result
}

/// Prints an error and its causes (skipping causes its message already includes).
fn report(e: &anyhow::Error, code: u8) -> ExitCode {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// `nix-infra runs list | head` closes stdout early: end quietly as other
/// Unix tools do (status 141, SIGPIPE's), not with a panic and a backtrace.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    if let Some(f) = &cli.global.env {
        let _ = cluster::ENV_FILE.set(f.clone());
    }
    observability::init(cli.global.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let traces = match observability::traces::RunTraces::from_env() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("warning: not exporting traces: {e}");
                None
            }
        };
        let _ = TRACES.set(traces.clone());
        let result = dispatch(cli).await;
        workflows::node::close_connections().await;
        if let Some(t) = traces {
            t.shutdown().await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::RunNotSucceeded) => ExitCode::from(1),
        Err(Failure::Other(e)) => report(&e, 1),
        Err(Failure::Usage(e)) => report(&e, 2),
        Err(Failure::Database(e)) => report(&e, 3),
    }
}
