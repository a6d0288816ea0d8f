//! # storage: where runs live
//!
//! [`SqlStore`] implements the engine's [`engine::Store`] on **Postgres** (for
//! teams and CI, several workers on one database) and on **SQLite** (the
//! zero-setup default: `.nix-infra/state.db` in the cluster directory).
//!
//! Both backends share one set of SQL statements and one implementation: the
//! statements use only what both dialects accept, and a `match` over the
//! pool type compiles each method once per backend. The schemas differ only
//! in column type names; each backend has its own migrations. On Postgres
//! every table, including sqlx's migration ledger, lives in the `nix_infra`
//! schema, so one database can host nix-infra beside other things (apalis
//! keeps its own schema; the queue and the worker loop live in the `worker`
//! crate, above the engine: storage only implements the engine's `Store`).
//!
//! ```text
//!   engine::Store (trait) ◄── SqlStore ──┬── PgPool      (search_path = nix_infra)
//!                                        └── SqlitePool  (WAL, synchronous=FULL)
//! ```
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let url = storage::default_url(dir.path());
//! let store = storage::connect(&url).await.unwrap();
//! assert_eq!(store.backend(), storage::Backend::Sqlite);
//! // `store` is an engine::Store: hand it to engine::Engine::new.
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod pg_commit;
mod queue_sql;
mod rows;
mod sql;

pub use sql::SqlStore;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The Postgres schema holding the engine's tables.
pub const PG_SCHEMA: &str = "nix_infra";

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// Why opening the database failed; messages never include a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL could not be parsed or names an unsupported database.
    #[error("invalid database URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot open database `{url}`: {reason}")]
    Unreachable {
        /// The URL, password masked.
        url: String,
        /// The driver's explanation.
        reason: String,
    },
    /// The schema could not be created or upgraded.
    #[error("cannot migrate database `{url}`: {reason}")]
    Migration {
        /// The URL, password masked.
        url: String,
        /// The driver's explanation.
        reason: String,
    },
}

/// The default database: a SQLite file `.nix-infra/state.db` under `working_dir`.
pub fn default_url(working_dir: &Path) -> String {
    format!(
        "sqlite://{}",
        working_dir.join(".nix-infra").join("state.db").display()
    )
}

/// Masks the password of a URL for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Opens (creating if needed) and migrates the database at `url`.
///
/// `postgres://` and `postgresql://` select Postgres; `sqlite://PATH` (or
/// `sqlite:PATH`) selects SQLite, creating the file and its directory.
pub async fn connect(url: &str) -> Result<SqlStore, ConnectError> {
    let shown = redact_url(url);
    let invalid = |reason: String| ConnectError::InvalidUrl {
        url: shown.clone(),
        reason,
    };
    let unreachable = |e: sqlx::Error| ConnectError::Unreachable {
        url: shown.clone(),
        reason: describe(&e),
    };
    let scheme = url.split(':').next().unwrap_or_default();
    let store = match scheme {
        "postgres" | "postgresql" => {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| invalid(describe(&e)))?
                .options([("search_path", PG_SCHEMA)]);
            // One direct connection first: a pool would hide "connection
            // refused" behind a generic acquire timeout.
            let probe = tokio::time::timeout(Duration::from_secs(10), opts.connect())
                .await
                .map_err(|_| ConnectError::Unreachable {
                    url: shown.clone(),
                    reason: "no answer within 10 s".into(),
                })?
                .map_err(unreachable)?;
            let _ = probe.close().await;
            // No ping before every acquire: it would double the round trips of
            // each commit. A broken connection fails the statement instead, and
            // the executor retries transient write errors.
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            SqlStore::postgres(pool)
        }
        "sqlite" => {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or_default();
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("no file path (use sqlite://PATH)".into()));
            }
            let parent = Path::new(path).parent();
            if path != ":memory:"
                && let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| ConnectError::Unreachable {
                    url: shown.clone(),
                    reason: format!("cannot create directory {}: {e}", dir.display()),
                })?;
            }
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| invalid(describe(&e)))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            SqlStore::sqlite(pool)
        }
        "" => return Err(invalid("empty URL".into())),
        other if !url.contains("://") && !url.starts_with("sqlite:") => {
            return Err(invalid(format!(
                "`{other}` is not a URL; expected postgres://USER@HOST:PORT/DB or sqlite://PATH"
            )));
        }
        other => {
            return Err(invalid(format!(
                "unsupported scheme `{other}`; expected postgres:// or sqlite://"
            )));
        }
    };
    store.migrate().await.map_err(|e| ConnectError::Migration {
        url: shown.clone(),
        reason: describe(&e),
    })?;
    Ok(store)
}

/// A one-line explanation of a driver error, with the OS cause when there is one.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
