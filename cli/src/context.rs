//! What every command works with: the opened engine ([`Context`]) and the
//! failures it maps to exit statuses ([`Failure`]).

use crate::args::{Global, Output};
use engine::{Engine, EngineConfig, EngineError, StoreError};
use std::sync::Arc;
use std::time::Duration;
use workflows::cluster::ClusterError;
use workflows::request::Origin;

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

impl Failure {
    /// Bad usage, with this message.
    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure::Usage(anyhow::anyhow!("{message}"))
    }

    /// Any other failure, with this message.
    pub fn other(message: impl std::fmt::Display) -> Failure {
        Failure::Other(anyhow::anyhow!("{message}"))
    }
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

impl From<ClusterError> for Failure {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Refused(_) | ClusterError::Adoptable { .. } => Failure::Usage(e.into()),
            ClusterError::Unavailable(_) => Failure::Other(e.into()),
        }
    }
}

/// This process's trace exporter, if OTEL_EXPORTER_OTLP_* configures one.
pub static TRACES: std::sync::OnceLock<Option<Arc<observability::traces::RunTraces>>> =
    std::sync::OnceLock::new();

/// The engine over the opened store, and the options it was opened with.
pub struct Context {
    /// Global options.
    pub global: Global,
    /// The engine over the opened store.
    pub engine: Engine,
    /// The database URL in use.
    pub url: String,
}

impl Context {
    /// Opens the store the global options name (default: the SQLite file in DIR).
    pub async fn open(global: Global) -> Result<Self, Failure> {
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

    /// The run queue named `name`, beside the context's database.
    pub async fn queue(&self, name: &str) -> Result<::worker::queue::Queue, Failure> {
        let heartbeat = Duration::from_secs(self.global.lease_ttl).div_f64(3.0);
        Ok(::worker::queue::Queue::open(&self.url, name, heartbeat).await?)
    }

    /// Whether results are JSON.
    pub fn json(&self) -> bool {
        self.global.output == Output::Json
    }
}

impl Global {
    /// The cluster repo this invocation works on (`-d`, `--env`).
    pub fn origin(&self) -> Origin {
        Origin {
            dir: self.working_dir.clone(),
            env_file: self.env_file(),
            local_files: true,
            ssh_key: self.ssh_key.clone(),
        }
    }
}
