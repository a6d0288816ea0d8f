//! What an AI agent may do with the cluster without changing it, as
//! `nix-infra mcp` offers it: the read-only command grammar, reads on
//! nodes, system statistics and the repo's configuration files.
//!
//! Changes are not here: an agent's change is a [`crate::request::Request`]
//! like any other, checked by [`crate::request::Request::check`] and run as
//! a durable run.
//!
//! ```text
//!   "ps aux | grep etcd" ─► words ─► readonly (a rule per binary) ─► ReadOnly ─► remote::bounded (as nobody)
//!                                          └─► NotReadOnly { reason }  (a run, with --allow-changes)
//! ```
//!
//! ```
//! use workflows::agent::ReadOnly;
//! let ok = ReadOnly::parse("journalctl -u etcd.service -n 20").unwrap();
//! assert_eq!(ok.script(), "'journalctl' '-u' 'etcd.service' '-n' '20'");
//! let no = ReadOnly::parse("systemctl restart etcd").unwrap_err();
//! assert!(no.to_string().contains("changes the system"));
//! ```

mod files;
mod net;
mod opts;
pub mod readonly;
pub mod remote;
pub mod repo_files;
pub mod stats;
pub mod units;
pub mod words;

pub use readonly::ReadOnly;
pub use remote::NodeRead;
pub use repo_files::RepoFiles;
pub use stats::Stats;

/// Why a command is not read-only: the reason, for the agent to read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotReadOnly {
    /// Why.
    pub reason: String,
}

impl NotReadOnly {
    /// The refusal, with its reason.
    pub fn new(reason: impl Into<String>) -> NotReadOnly {
        NotReadOnly {
            reason: reason.into(),
        }
    }
}
