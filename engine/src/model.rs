//! The persisted records of runs and attempts, and their statuses.

use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch; the engine's one time unit in storage.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The stored and printed name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}` (expected one of: {})",
                        stringify!($name), [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum! {
    /// Where a run is in its life.
    RunStatus {
        /// Created, never executed.
        Pending = "pending",
        /// An executor holds (or held, if the lease expired) the run.
        Running = "running",
        /// Every step succeeded.
        Succeeded = "succeeded",
        /// A step failed for good; resumable.
        Failed = "failed",
        /// Cancelled by a user; resumable.
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    /// Whether no executor will touch the run again without a resume.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

string_enum! {
    /// How one attempt of a step ended (or that it has not yet).
    AttemptStatus {
        /// Started; no end recorded.
        Running = "running",
        /// Returned an output.
        Succeeded = "succeeded",
        /// Returned an error.
        Failed = "failed",
        /// Exceeded the step's timeout.
        TimedOut = "timed_out",
        /// Stopped because the run was cancelled.
        Cancelled = "cancelled",
        /// Its executor died or lost the lease before it ended.
        Abandoned = "abandoned",
        /// Output copied from another run by a fork.
        Copied = "copied",
    }
}

string_enum! {
    /// A step's status, derived from its attempts and its dependencies.
    StepStatus {
        /// Not started yet.
        Pending = "pending",
        /// An attempt is in flight.
        Running = "running",
        /// Its last attempt failed and another is scheduled.
        Retrying = "retrying",
        /// Has an output.
        Succeeded = "succeeded",
        /// Its last attempt failed.
        Failed = "failed",
        /// Its last attempt was cancelled.
        Cancelled = "cancelled",
        /// Will not run in this execution because a dependency failed.
        Blocked = "blocked",
    }
}

/// A run as stored, without its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique id, chosen by the caller or generated.
    pub id: String,
    /// Workflow name, e.g. `node.provision`.
    pub workflow: String,
    /// Workflow version that planned the run.
    pub version: i64,
    /// The run input (JSON, with secrets redacted).
    pub input: serde_json::Value,
    /// The plan fixed at start.
    pub plan: Plan,
    /// Current status.
    pub status: RunStatus,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// Set when the run was forked: `(run id, step)` it was forked from.
    pub forked_from: Option<(String, String)>,
    /// Resources the run locks while it executes (e.g. `node/worker1`).
    pub resources: Vec<String>,
    /// A cancel was requested and not yet acted on.
    pub cancel_requested: bool,
    /// The lease holder, if any.
    pub lease_owner: Option<String>,
    /// The fencing epoch; rises on every takeover.
    pub lease_epoch: i64,
    /// When the lease lapses unless renewed.
    pub lease_expires_at: Option<Millis>,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// When it reached a final status.
    pub finished_at: Option<Millis>,
}

impl RunRecord {
    /// Whether the run is `running` but its executor's lease has lapsed.
    pub fn is_abandoned(&self, now: Millis) -> bool {
        self.status == RunStatus::Running && self.lease_expires_at.is_none_or(|t| t < now)
    }
}

/// One attempt of one step, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The step.
    pub step: String,
    /// 1-based attempt number, unique per step across resumes.
    pub number: i64,
    /// Outcome.
    pub status: AttemptStatus,
    /// Start time.
    pub started_at: Millis,
    /// End time.
    pub finished_at: Option<Millis>,
    /// The step's output, when it succeeded.
    pub output: Option<serde_json::Value>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// When a failed attempt's retry was scheduled for, if one was.
    pub retry_at: Option<Millis>,
    /// For copied attempts, the run the output came from.
    pub copied_from: Option<String>,
}

/// A run with all its attempts, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    /// The run.
    pub run: RunRecord,
    /// Every attempt of every step, ordered by start time.
    pub attempts: Vec<AttemptRecord>,
}

/// One persisted log line of an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The step.
    pub step: String,
    /// The attempt number.
    pub attempt: i64,
    /// Order within the attempt.
    pub seq: i64,
    /// When it was logged.
    pub at: Millis,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub line: String,
}

/// A filter for listing runs.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only these statuses (any, when empty).
    pub statuses: Vec<RunStatus>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
    /// Only runs whose id starts with this.
    pub id_prefix: Option<String>,
}

string_enum! {
    /// What a schedule does about fire times missed while nothing ran.
    CatchUp {
        /// Forget them; fire again at the next fire time.
        Skip = "skip",
        /// Fire once, for the latest missed fire time.
        Once = "once",
    }
}

/// A cron schedule that starts runs of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// Cron expression: 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in, e.g. `Europe/Berlin`.
    pub tz: String,
    /// Workflow to start.
    pub workflow: String,
    /// Its input.
    pub input: serde_json::Value,
    /// Policy for missed fire times.
    pub catch_up: CatchUp,
    /// Resources each run locks.
    pub resources: Vec<String>,
    /// Paused schedules do not fire (missed times follow `catch_up` on resume).
    pub paused: bool,
    /// The latest fire time handled (ms); only moves forward.
    pub last_fire: Millis,
    /// Creation time.
    pub created_at: Millis,
}
