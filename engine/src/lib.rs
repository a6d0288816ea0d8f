//! # engine: durable DAG runs for nix-infra
//!
//! Every nix-infra lifecycle (provision a node, deploy an app, rotate a
//! secret) is a **run** of a **workflow**. This crate executes runs so that a
//! crash, a `kill -9`, a lost laptop or a failed CI job never costs more than
//! the step that was in flight.
//!
//! ## Concepts
//! - A [`Workflow`] has a name and a version. From a run's input it builds a
//!   [`Plan`]: the **steps** ([`StepSpec`]), their dependencies, and each
//!   step's [`RetryPolicy`] and timeout. The plan is validated (no cycle, no
//!   unknown dependency, no duplicate, not empty) and persisted with the run,
//!   so a resume follows the same plan even after the code changed.
//! - A **step kind** is a type implementing [`Step`]: its kind string, its
//!   parameter type, its output type and its body, declared once. The
//!   planner makes specs with [`StepSpec::of`], the workflow registers the
//!   kind with [`Workflow::with`], and a dependent reads the output back as
//!   the kind's type with [`StepContext::output`]: a field that is missing or
//!   of the wrong type fails the reading step for good, naming the step and
//!   the field, rather than reading as empty. ([`Workflow::step`] registers
//!   an untyped closure returning any JSON, for tests and one-offs.)
//! - A step may name its **subject** ([`StepSpec::on`]), what it acts on: a
//!   node, say. Summaries, progress lines and traces group steps by it;
//!   [`StepSpec::subject()`] also answers for plans stored before subjects
//!   existed.
//! - A step returns its output or a [`StepError`] that is retryable or
//!   permanent.
//! - Each execution of a step is an **attempt**. Its start, end, output, error
//!   and log lines are written to the [`Store`] before the run moves on.
//!   Completed steps are never executed again; execution is at-least-once,
//!   so steps with outside effects must be idempotent (use
//!   [`StepContext::idempotency_key`]).
//! - The executing process holds a [`Lease`] with a fencing epoch. A dead
//!   executor's lease lapses and another process takes over with a higher
//!   epoch; the store rejects writes carrying the old one.
//! - [`Secret`] keeps values out of outputs, logs and errors.
//!
//! ## Layers
//! ```text
//!   cli ──► workflows ──► engine ──► Store (trait, defined here)
//!                                      ▲
//!                          storage ────┘  Postgres / SQLite (sqlx)
//! ```
//!
//! ## Example
//! Two kinds of step: `fetch` finds who to greet, `greet` reads what `fetch`
//! returned as the type `fetch` declared.
//! ```
//! use engine::{testing::MemoryStore, Engine, Observer, Plan, Registry, RunStatus};
//! use engine::{Step, StepContext, StepError, StepSpec, Workflow};
//! use serde::{Deserialize, Serialize};
//! use std::sync::Arc;
//!
//! struct Fetch;
//! #[derive(Serialize, Deserialize)]
//! struct Fetched { who: String }
//! impl Step for Fetch {
//!     const KIND: &'static str = "fetch";
//!     type Params = ();
//!     type Output = Fetched;
//!     async fn run(_ctx: StepContext, _: ()) -> Result<Fetched, StepError> {
//!         Ok(Fetched { who: "world".into() })
//!     }
//! }
//!
//! struct Greet;
//! #[derive(Serialize, Deserialize)]
//! struct Greeting { greeting: String }
//! impl Step for Greet {
//!     const KIND: &'static str = "greet";
//!     type Params = String; // the greeting word
//!     type Output = Greeting;
//!     async fn run(ctx: StepContext, word: String) -> Result<Greeting, StepError> {
//!         let fetched = ctx.output::<Fetch>("fetch")?;
//!         ctx.log.info(format!("{word}, {}", fetched.who));
//!         Ok(Greeting { greeting: format!("{word}, {}", fetched.who) })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let hello = Workflow::new("hello", 1)
//!     .planner(|_| Ok(Plan::new(vec![
//!         StepSpec::of::<Fetch>("fetch", &()),
//!         StepSpec::of::<Greet>("greet", &"hello".to_string()).after("fetch").on("world"),
//!     ])))
//!     .with::<Fetch>()
//!     .with::<Greet>();
//! let mut registry = Registry::new();
//! registry.register(hello);
//! let engine = Engine::new(Arc::new(MemoryStore::default()), registry);
//!
//! let run = engine.create("hello", serde_json::json!({}), None).await.unwrap();
//! let id = run.record().id.clone();
//! let outcome = engine.execute(&id, Default::default(), Observer::none()).await.unwrap();
//! assert_eq!(outcome.status, RunStatus::Succeeded);
//! let state = engine.load(&id).await.unwrap();
//! assert_eq!(state.attempts[1].output, Some(serde_json::json!({"greeting": "hello, world"})));
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod attempt;
mod events;
mod executor;
pub mod inspect;
mod model;
mod ops;
mod plan;
pub mod schedule;
mod secret;
mod step;
mod store;
pub mod testing;
mod typed;
mod workflow;

pub use events::{Observer, RunEvent, Watcher};
pub use model::{
    AttemptRecord, AttemptStatus, CatchUp, LogLine, Millis, RunFilter, RunRecord, RunState,
    RunStatus, Schedule, StepStatus, now_millis,
};
pub use ops::{Engine, new_run_id, validate_run_id};
pub use plan::{Plan, PlanError, RetryPolicy, StepSpec};
pub use secret::{REDACTED, Secret};
pub use step::{ErrorClass, StepContext, StepError, StepLogger};
pub use store::{
    Ack, AttemptEnd, AttemptStart, CancelOutcome, Created, Lease, NewRun, Store, StoreError,
    Transition,
};
pub use typed::Step;
pub use workflow::{Handler, Registry, Workflow};

use std::collections::BTreeMap;
use std::time::Duration;

/// How an engine executes runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This executor's identity in leases; unique per process.
    pub owner: String,
    /// How long a lease lasts without renewal; a crashed executor's run is
    /// taken over after at most this long.
    pub lease_ttl: Duration,
    /// How often the lease is renewed, logs flushed and remote cancels checked.
    pub heartbeat: Duration,
    /// Most attempts in flight at once within one run.
    pub concurrency: usize,
    /// After a cancel, how long in-flight steps may take to stop by themselves.
    pub cancel_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: default_owner(),
            lease_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            concurrency: 16,
            cancel_grace: Duration::from_secs(10),
        }
    }
}

impl EngineConfig {
    /// Sets the lease time-to-live, keeping the heartbeat at most a third of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self.heartbeat = self.heartbeat.min(ttl / 3);
        self
    }
}

/// `host:pid:random`, so an operator can tell which process holds a run.
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let tag: u32 = rand::random();
    format!("{host}:{}:{tag:08x}", std::process::id())
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// The run.
    pub run_id: String,
    /// Its final status.
    pub status: RunStatus,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Steps that failed in this execution, with their errors.
    pub failed_steps: BTreeMap<String, String>,
}

impl RunOutcome {
    /// The outcome recorded on a run that already finished.
    pub fn from_record(run: &RunRecord) -> Self {
        RunOutcome {
            run_id: run.id.clone(),
            status: run.status,
            error: run.error.clone(),
            failed_steps: BTreeMap::new(),
        }
    }
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No workflow of that name is registered.
    #[error("unknown workflow `{name}` (known: {})", known.join(", "))]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// The plan was rejected; nothing was written.
    #[error("invalid plan: {0}")]
    Plan(#[from] PlanError),
    /// The run id has characters outside `[A-Za-z0-9._:-]` or a bad length.
    #[error("invalid run id `{0}`: use 1-128 characters from A-Z a-z 0-9 . _ : -")]
    InvalidRunId(String),
    /// The id is taken by a run with another workflow or input.
    #[error("run id `{id}` is already used by a `{workflow}` run with a different input")]
    RunIdConflict {
        /// The id.
        id: String,
        /// The workflow of the existing run.
        workflow: String,
    },
    /// The run has no step of that name.
    #[error("run `{run_id}` has no step `{step}`")]
    UnknownStep {
        /// The run.
        run_id: String,
        /// The step asked for.
        step: String,
    },
    /// Another live executor holds the run.
    #[error("run `{run_id}` is being executed by `{owner}`, which is renewing its lease")]
    Busy {
        /// The run.
        run_id: String,
        /// The live holder.
        owner: String,
    },
    /// This executor's lease was taken over; it stopped without further writes.
    #[error("lost the lease on run `{0}` to another executor")]
    LeaseLost(String),
    /// Interrupted while waiting.
    #[error("interrupted")]
    Interrupted,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Created {
    /// The run record, new or existing.
    pub fn record(&self) -> &RunRecord {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}
