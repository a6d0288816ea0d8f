//! # observability: how nix-infra reports what it does
//!
//! Every process (CLI, worker, server) calls [`init`] once. Diagnostics go to
//! stderr through `tracing`, filtered by `RUST_LOG` or the CLI's `-v` flags;
//! stdout stays free for results and `--output json`.
//!
//! ```text
//!   engine / tasks / workflows ──tracing events──► observability::init ──► stderr
//! ```
//!
//! Spans follow one convention: a `step` span carries `run`, `step` and
//! `attempt` fields, so a log line can always be traced to the attempt that
//! wrote it.
//!
//! [`traces`] exports each run as one OpenTelemetry trace: an engine
//! [`engine::Watcher`] turns the run's events into spans, sent over OTLP as
//! they end. Nothing is set up unless `OTEL_EXPORTER_OTLP_ENDPOINT` is.
//!
//! ```text
//!   engine ──RunEvents──► traces::RunTraces ──OTLP──► collector
//! ```
//!
//! ```
//! observability::init(0); // warnings and errors only
//! tracing::warn!("printed to stderr");
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod dashboard;
pub mod mesh;
pub mod run_views;
pub mod traces;

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger; `verbosity` 0 = warn, 1 = info, 2 = debug, 3+ = trace.
///
/// `RUST_LOG`, when set, wins. Calling it twice is harmless.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
