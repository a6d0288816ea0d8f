//! `nix-infra sandbox up|down|status`: the test cloud as a local, free Hetzner stand-in.
//!
//! `up` starts `nix-infra sandbox serve` in the background (its own process
//! group, so closing the terminal does not stop it), waits for its endpoint,
//! and writes `HCLOUD_ENDPOINT` and `HCLOUD_TOKEN` into `DIR/.env`, so the
//! ordinary commands talk to it. `down` stops it (and every node it booted)
//! and takes those lines out again.

use crate::Failure;
use crate::args::{Global, Output};
use anyhow::anyhow;
use clap::Subcommand;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn state_dir(dir: &Path) -> PathBuf {
    dir.join(".nix-infra")
}

fn pid_file(dir: &Path) -> PathBuf {
    state_dir(dir).join("sandbox.pid")
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// The running sandbox's pid, if any.
fn running(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// Sets (or, with `None`, removes) the HCLOUD_* lines of `DIR/.env`, keeping the rest.
fn update_env(dir: &Path, values: Option<(&str, &str)>) -> Result<(), Failure> {
    let path = dir.join(".env");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !l.starts_with("HCLOUD_ENDPOINT=") && !l.starts_with("HCLOUD_TOKEN="))
        .map(str::to_string)
        .collect();
    if let Some((endpoint, token)) = values {
        lines.push(format!("HCLOUD_ENDPOINT={endpoint}"));
        lines.push(format!("HCLOUD_TOKEN={token}"));
    }
    let text = if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n"
    };
    std::fs::write(&path, text)
        .map_err(|e| Failure::Other(anyhow!("cannot write {}: {e}", path.display())))
}

fn env_value(dir: &Path, key: &str) -> Option<String> {
    workflows::cluster::read_env_file(&dir.join(".env"))
        .ok()?
        .get(key)
        .cloned()
}

/// `sandbox up`.
pub fn up(dir: &Path, output: Output) -> Result<(), Failure> {
    if let Some(pid) = running(dir) {
        eprintln!("the sandbox is already running (pid {pid})");
        return status(dir, output);
    }
    if !rustix::process::geteuid().is_root() {
        return Err(Failure::Usage(anyhow!(
            "the sandbox boots its nodes in their own namespaces with sshd on port 22, which needs root"
        )));
    }
    std::fs::create_dir_all(state_dir(dir)).map_err(|e| Failure::Other(e.into()))?;
    let token = format!("sandbox-{}", engine::new_run_id());
    let log_path = state_dir(dir).join("sandbox.log");
    let log = std::fs::File::create(&log_path).map_err(|e| Failure::Other(e.into()))?;
    let exe = std::env::current_exe().map_err(|e| Failure::Other(e.into()))?;
    let child = Command::new(exe)
        .args(["sandbox", "serve", "--listen", "127.0.0.1:0"])
        .env("HCLOUD_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| Failure::Other(e.into()))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::Other(anyhow!("cannot start the sandbox: {e}")))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(15);
    let endpoint = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = BufReader::new(text.as_bytes())
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("HCLOUD_ENDPOINT="))
        {
            break line.trim_start_matches("HCLOUD_ENDPOINT=").to_string();
        }
        if !alive(pid) || Instant::now() > deadline {
            return Err(Failure::Other(anyhow!("the sandbox did not start: {text}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::fs::write(pid_file(dir), pid.to_string()).map_err(|e| Failure::Other(e.into()))?;
    update_env(dir, Some((&endpoint, &token)))?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::json!({"status": "running", "pid": pid, "endpoint": endpoint})
        );
    } else {
        println!(
            "sandbox running (pid {pid}) at {endpoint}; HCLOUD_ENDPOINT and HCLOUD_TOKEN are in {}",
            dir.join(".env").display()
        );
    }
    Ok(())
}

/// `sandbox status`.
pub fn status(dir: &Path, output: Output) -> Result<(), Failure> {
    let pid = running(dir);
    let endpoint = env_value(dir, "HCLOUD_ENDPOINT");
    if output == Output::Json {
        println!(
            "{}",
            serde_json::json!({"status": if pid.is_some() { "running" } else { "stopped" }, "pid": pid, "endpoint": endpoint})
        );
    } else {
        match pid {
            Some(p) => println!(
                "sandbox running (pid {p}) at {}",
                endpoint.unwrap_or_default()
            ),
            None => println!("sandbox stopped"),
        }
    }
    Ok(())
}

/// `sandbox down`.
pub fn down(dir: &Path, output: Output) -> Result<(), Failure> {
    if let Some(pid) = running(dir) {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            return Err(Failure::Other(anyhow!(
                "the sandbox (pid {pid}) did not stop"
            )));
        }
    }
    let _ = std::fs::remove_file(pid_file(dir));
    update_env(dir, None)?;
    if output == Output::Json {
        println!("{}", serde_json::json!({"status": "stopped"}));
    } else {
        println!("sandbox stopped");
    }
    Ok(())
}

/// `sandbox serve`: runs the test cloud in this process until SIGTERM.
pub async fn serve(listen: std::net::SocketAddr) -> Result<(), Failure> {
    let token = std::env::var("HCLOUD_TOKEN")
        .map_err(|_| Failure::Usage(anyhow!("HCLOUD_TOKEN is not set")))?;
    let cloud = ::sandbox::TestCloud::start_on(listen, ::sandbox::CloudConfig::sandbox(token))
        .await
        .map_err(|e| Failure::Other(anyhow!("cannot start the sandbox cloud: {e}")))?;
    println!("HCLOUD_ENDPOINT={}", cloud.endpoint());
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
