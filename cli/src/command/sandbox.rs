//! `nix-infra sandbox up|down|status`: the test cloud as a local, free Hetzner stand-in.
//!
//! `up` starts `nix-infra sandbox serve` in the background (its own process
//! group, so closing the terminal does not stop it), waits for its endpoint,
//! and writes `HCLOUD_ENDPOINT`, `HCLOUD_TOKEN`, `NIXOS_INFECT_URL` and
//! `NIXOS_INFECT_SHA256` into `DIR/.env`, so the ordinary commands talk to it
//! and its nodes install its nixos-infect stand-in. `down` stops it (and every node it booted)
//! and takes those lines out again.

use crate::Failure;
use crate::args::{Global, Output};
use ::sandbox::local;
use clap::Subcommand;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `nix-infra sandbox …`
#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Start the sandbox in the background and point DIR/.env at it.
    Up,
    /// Stop the sandbox and every node it booted; take it out of DIR/.env.
    Down,
    /// Say whether the sandbox runs, and where.
    Status,
    /// Run the sandbox in the foreground (what `up` starts).
    #[command(hide = true)]
    Serve {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// Runs one `sandbox` subcommand.
pub async fn run(global: &Global, cmd: SandboxCommand) -> Result<(), Failure> {
    let dir = &global.working_dir;
    match cmd {
        SandboxCommand::Up => up(dir, global.output),
        SandboxCommand::Down => down(dir, global.output),
        SandboxCommand::Status => status(dir, global.output),
        SandboxCommand::Serve { listen } => serve(listen).await,
    }
}

/// `sandbox up`.
pub fn up(dir: &Path, output: Output) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::Other(e.into()))?;
    let mut serve = Command::new(exe);
    serve.args(["sandbox", "serve", "--listen", "127.0.0.1:0"]);
    let (running, started) = local::up(dir, serve).map_err(|e| match e {
        local::LocalError::NeedsRoot => Failure::usage(e),
        other => Failure::other(other),
    })?;
    if !started {
        eprintln!("the sandbox is already running (pid {})", running.pid);
        return status(dir, output);
    }
    let endpoint = running.endpoint.unwrap_or_default();
    if output == Output::Json {
        let (pid, installer) = (running.pid, running.installer_url);
        println!(
            "{}",
            json!({"status": "running", "pid": pid, "endpoint": endpoint, "installer_url": installer})
        );
    } else {
        println!(
            "sandbox running (pid {}) at {endpoint}; HCLOUD_ENDPOINT, HCLOUD_TOKEN, NIXOS_INFECT_URL and NIXOS_INFECT_SHA256 are in {}",
            running.pid,
            dir.join(".env").display()
        );
    }
    Ok(())
}

/// `sandbox status`.
pub fn status(dir: &Path, output: Output) -> Result<(), Failure> {
    let running = local::status(dir);
    if output == Output::Json {
        let (status, pid, endpoint) = match &running {
            Some(r) => ("running", Some(r.pid), r.endpoint.clone()),
            None => ("stopped", None, None),
        };
        println!(
            "{}",
            json!({"status": status, "pid": pid, "endpoint": endpoint})
        );
        return Ok(());
    }
    match running {
        Some(r) => println!(
            "sandbox running (pid {}) at {}",
            r.pid,
            r.endpoint.unwrap_or_default()
        ),
        None => println!("sandbox stopped"),
    }
    Ok(())
}

/// `sandbox down`.
pub fn down(dir: &Path, output: Output) -> Result<(), Failure> {
    local::down(dir).map_err(Failure::other)?;
    if output == Output::Json {
        println!("{}", json!({"status": "stopped"}));
    } else {
        println!("sandbox stopped");
    }
    Ok(())
}

/// `sandbox serve`: runs the test cloud in this process until SIGTERM.
pub async fn serve(listen: std::net::SocketAddr) -> Result<(), Failure> {
    let token =
        std::env::var("HCLOUD_TOKEN").map_err(|_| Failure::usage("HCLOUD_TOKEN is not set"))?;
    let cloud = ::sandbox::TestCloud::start_on(listen, ::sandbox::CloudConfig::sandbox(token))
        .await
        .map_err(|e| Failure::other(format!("cannot start the sandbox cloud: {e}")))?;
    // One write, and a reader that has gone away is no reason to stop serving.
    let _ = std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        cloud.printed_lines().as_bytes(),
    );
    // Every stop goes through stopping the nodes and removing their state.
    let _finishing = crate::signal::shield();
    tokio::select! {
        _ = crate::signal::stop_requested() => {}
        _ = owner_gone() => {}
    }
    drop(cloud);
    Ok(())
}

/// With `NIX_INFRA_SANDBOX_OWNER=PID` (tests set it), the sandbox stops when
/// that process is gone, even if it was killed before it could say `down`.
async fn owner_gone() {
    let Some(pid) = std::env::var("NIX_INFRA_SANDBOX_OWNER")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return std::future::pending().await;
    };
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
