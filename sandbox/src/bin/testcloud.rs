//! `nix-infra-testcloud`: the fake Hetzner Cloud API as a process of its own.
//!
//! With its default flags it serves exactly what `nix-infra sandbox serve`
//! does ([`CloudConfig::sandbox`]); `--no-nodes` serves the API alone, with no
//! root needed, for trying other Hetzner clients against it. Prints
//! `HCLOUD_ENDPOINT=http://…/v1`, `NIXOS_INFECT_URL=…` and
//! `NIXOS_INFECT_SHA256=…` (its installer stand-in), each on a line of its
//! own, once it listens, then
//! serves until SIGTERM or Ctrl-C, when it stops every node it booted.
#![deny(unsafe_code)]

use clap::Parser;
use sandbox::{CloudConfig, TestCloud};
use std::net::SocketAddr;
use std::time::Duration;

/// A local stand-in for the Hetzner Cloud API whose servers boot sshd nodes on loopback.
#[derive(Parser)]
#[command(name = "nix-infra-testcloud", version)]
struct Args {
    /// Address to listen on; must be loopback.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Bearer token clients must present (HCLOUD_TOKEN).
    #[arg(long, env = "HCLOUD_TOKEN", hide_env_values = true)]
    token: String,
    /// How long create and delete actions take, in milliseconds [default: the sandbox's, 300].
    #[arg(long)]
    action_delay_ms: Option<u64>,
    /// Extra boot time of a node before its sshd answers, in milliseconds [default: the sandbox's, 200].
    #[arg(long)]
    boot_delay_ms: Option<u64>,
    /// Serve the API only; servers boot no sshd nodes (no root needed).
    #[arg(long)]
    no_nodes: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config = CloudConfig::sandbox(args.token);
    if let Some(ms) = args.action_delay_ms {
        config.action_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = args.boot_delay_ms {
        config.boot_delay = Duration::from_millis(ms);
    }
    config.nodes = !args.no_nodes;
    if config.nodes && !rustix::process::geteuid().is_root() {
        eprintln!(
            "error: booting nodes needs root (mount namespaces, port 22); use --no-nodes for the API alone"
        );
        return std::process::ExitCode::from(2);
    }
    let cloud = match TestCloud::start_on(args.listen, config).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start the test cloud on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    // One write, and a reader that has gone away is no reason to stop serving.
    let _ = std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        cloud.printed_lines().as_bytes(),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(cloud);
    std::process::ExitCode::SUCCESS
}
