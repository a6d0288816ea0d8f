//! The `nix-infra` binary: parses the command line, opens the state, runs the command.
//!
//! The crate holds argument mapping (`command/`, one file per subcommand),
//! output (`progress`, `summary`, `views`) and process concerns (signals, exit
//! statuses, the dashboard's HTTP server). What a command means and what it
//! checks lives in `workflows` (`workflows::request`), shared with the HTTP API.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod command;
mod context;
mod example;
mod health;
mod progress;
mod serve;
mod serve_auth;
mod serve_live;
mod signal;
mod start;
mod summary;
mod views;

use clap::Parser;
use command::Cli;
pub use context::{Context, Failure};
use std::process::ExitCode;

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
    observability::init(cli.global.verbosity());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // From the start: a stop asked for at any moment is heard (see `signal`).
        signal::watch();
        let traces = match observability::traces::RunTraces::from_env() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("warning: not exporting traces: {e}");
                None
            }
        };
        let _ = context::TRACES.set(traces.clone());
        let result = command::run(cli.global, cli.command).await;
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
