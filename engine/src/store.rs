//! [`Store`]: the persistence the engine needs, owned here and implemented in `storage`.

use crate::model::{
    AttemptStatus, LogLine, Millis, RunFilter, RunRecord, RunState, RunStatus, Schedule,
};
use crate::plan::Plan;
use async_trait::async_trait;

/// Errors a store reports to the engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run with that id.
    #[error("no run with id `{0}`")]
    NotFound(String),
    /// The caller's lease is no longer current: another executor took the run over.
    #[error("lease on run `{run_id}` is stale (epoch {epoch} was superseded)")]
    StaleLease {
        /// The run.
        run_id: String,
        /// The epoch the caller presented.
        epoch: i64,
    },
    /// A live lease held by someone else.
    #[error("run `{run_id}` is leased by `{owner}` until {expires_at} ms")]
    LeaseHeld {
        /// The run.
        run_id: String,
        /// The current holder.
        owner: String,
        /// When its lease lapses.
        expires_at: Millis,
    },
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(String),
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The id.
    pub id: String,
    /// The workflow name.
    pub workflow: String,
    /// The workflow version.
    pub version: i64,
    /// The input, already redacted.
    pub input: serde_json::Value,
    /// The validated plan.
    pub plan: Plan,
    /// For a fork: the run and step it was forked from.
    pub forked_from: Option<(String, String)>,
    /// For a fork: step outputs copied from the parent, recorded as `copied` attempts.
    pub copied: Vec<(String, serde_json::Value)>,
    /// Resources the run locks while it executes.
    pub resources: Vec<String>,
    /// Creation time.
    pub now: Millis,
}

impl NewRun {
    /// The record a store writes for this run: pending, unleased.
    pub fn record(&self) -> crate::model::RunRecord {
        crate::model::RunRecord {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            version: self.version,
            input: self.input.clone(),
            plan: self.plan.clone(),
            status: RunStatus::Pending,
            error: None,
            forked_from: self.forked_from.clone(),
            resources: self.resources.clone(),
            cancel_requested: false,
            lease_owner: None,
            lease_epoch: 0,
            lease_expires_at: None,
            created_at: self.now,
            updated_at: self.now,
            finished_at: None,
        }
    }
}

/// The result of [`Store::create_run`].
#[derive(Clone, Debug)]
pub enum Created {
    /// A new run was written.
    New(RunRecord),
    /// A run with that id already existed; nothing was written.
    Existing(RunRecord),
}

/// Proof of holding a run: what every fenced write presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// The holder.
    pub owner: String,
    /// The fencing epoch granted.
    pub epoch: i64,
}

/// The start of an attempt.
#[derive(Clone, Debug)]
pub struct AttemptStart {
    /// The step.
    pub step: String,
    /// The attempt number.
    pub number: i64,
}

/// The end of an attempt.
#[derive(Clone, Debug)]
pub struct AttemptEnd {
    /// The step.
    pub step: String,
    /// The attempt number.
    pub number: i64,
    /// How it ended (not `Running`).
    pub status: AttemptStatus,
    /// Output, when it succeeded (already redacted).
    pub output: Option<serde_json::Value>,
    /// Error, when it failed.
    pub error: Option<String>,
    /// When the next attempt is due, if a retry is scheduled.
    pub retry_at: Option<Millis>,
}

/// Everything one fenced write changes, committed atomically.
///
/// The executor batches a step's end with the next steps' starts so a chain
/// costs one commit per step.
#[derive(Clone, Debug, Default)]
pub struct Transition {
    /// Time of the write.
    pub now: Millis,
    /// New lease expiry (the write doubles as a heartbeat).
    pub lease_expires_at: Millis,
    /// Attempts that ended.
    pub ended: Vec<AttemptEnd>,
    /// Attempts that started.
    pub started: Vec<AttemptStart>,
    /// Log lines to append.
    pub logs: Vec<LogLine>,
    /// A new run status.
    pub status: Option<RunStatus>,
    /// The run's error (set with a failed status; cleared otherwise when status is set).
    pub error: Option<String>,
    /// Mark attempts still `running` from a previous owner as `abandoned`.
    pub abandon_running: bool,
    /// Give the lease up (with a final status).
    pub release: bool,
}

/// What the store tells the writer after a fenced write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// Someone asked for the run to be cancelled.
    pub cancel_requested: bool,
}

/// What a cancel request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run is held by a live executor, which will stop it.
    Requested,
    /// Nobody was executing it; it is now `cancelled`.
    Cancelled,
    /// It had already finished with this status; nothing changed.
    AlreadyFinal(RunStatus),
}

/// Durable storage of runs, attempts, logs and leases.
///
/// Every method is atomic. Fenced methods take a [`Lease`] and fail with
/// [`StoreError::StaleLease`] if its epoch or owner is no longer current.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a run, or returns the existing one with the same id.
    async fn create_run(&self, run: &NewRun) -> Result<Created, StoreError>;

    /// Takes the lease if it is free or expired, raising the epoch.
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Lease, StoreError>;

    /// Applies a transition under the lease, atomically.
    async fn commit(&self, lease: &Lease, transition: &Transition) -> Result<Ack, StoreError>;

    /// Reads a run and all its attempts.
    async fn load_run(&self, run_id: &str) -> Result<RunState, StoreError>;

    /// Lists runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// Reads log lines of a run, optionally of one step, in order.
    async fn logs(&self, run_id: &str, step: Option<&str>) -> Result<Vec<LogLine>, StoreError>;

    /// Asks for a run to be cancelled; cancels it at once if no live lease holds it.
    async fn request_cancel(&self, run_id: &str, now: Millis) -> Result<CancelOutcome, StoreError>;

    /// Takes every lock in `resources` for `run_id`, all or none.
    ///
    /// A lock is free when nobody holds it, when its run has finished, or when
    /// its run's lease lapsed (and it was taken more than `grace` ms ago).
    /// Returns the id of a live run holding one of them, if any.
    async fn try_lock(
        &self,
        run_id: &str,
        resources: &[String],
        now: Millis,
        grace: Millis,
    ) -> Result<Option<String>, StoreError>;

    /// Releases every lock `run_id` holds.
    async fn unlock(&self, run_id: &str) -> Result<(), StoreError>;

    /// Adds a schedule; `false` if one with that name exists (nothing changes).
    async fn add_schedule(&self, schedule: &Schedule) -> Result<bool, StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError>;

    /// Pauses or resumes a schedule; `false` if there is none of that name.
    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError>;

    /// Removes a schedule; `false` if there is none of that name.
    async fn remove_schedule(&self, name: &str) -> Result<bool, StoreError>;

    /// Moves a schedule's `last_fire` forward to `to`; `false` if it was already there or past.
    async fn advance_schedule(&self, name: &str, to: Millis) -> Result<bool, StoreError>;
}
