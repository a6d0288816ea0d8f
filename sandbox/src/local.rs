//! A sandbox that outlives the command that started it: `nix-infra sandbox
//! up|down|status`.
//!
//! [`up`] starts a serving process in the background (its own process group,
//! so closing the terminal does not stop it), waits for it to print its
//! endpoint and its installer, and writes `HCLOUD_ENDPOINT`, `HCLOUD_TOKEN`,
//! `NIXOS_INFECT_URL` and `NIXOS_INFECT_SHA256` into the cluster's `.env`, so
//! the ordinary commands talk to it and its nodes fetch its installer stand-in
//! instead of nixos-infect. [`down`] stops it (and with it every node it
//! booted) and takes those lines out again. The
//! process's pid lives in `DIR/.nix-infra/sandbox.pid`, its output in
//! `DIR/.nix-infra/sandbox.log`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the sandbox could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Nodes need namespaces and port 22.
    #[error(
        "the sandbox boots its nodes in their own namespaces with sshd on port 22, which needs root"
    )]
    NeedsRoot,
    /// A file or process could not be handled.
    #[error("{0}")]
    Io(String),
    /// The serving process ended, or said nothing in time.
    #[error("the sandbox did not start: {0}")]
    DidNotStart(String),
    /// The serving process outlived its SIGTERM.
    #[error("the sandbox (pid {0}) did not stop")]
    DidNotStop(i32),
}

/// A sandbox serving in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its process.
    pub pid: i32,
    /// Its API endpoint, as written into `.env`.
    pub endpoint: Option<String>,
    /// Its installer's URL, as written into `.env`.
    pub installer_url: Option<String>,
}

/// The `.env` keys a sandbox sets, in the order it writes them: the only
/// differences between a sandbox run and a real one.
pub const ENV_KEYS: [&str; 4] = [
    "HCLOUD_ENDPOINT",
    "HCLOUD_TOKEN",
    "NIXOS_INFECT_URL",
    "NIXOS_INFECT_SHA256",
];

/// What the serving process prints, one `KEY=value` line each, once it serves.
const PRINTED: [&str; 3] = ["HCLOUD_ENDPOINT", "NIXOS_INFECT_URL", "NIXOS_INFECT_SHA256"];

fn state_dir(dir: &Path) -> PathBuf {
    dir.join(".nix-infra")
}

fn pid_file(dir: &Path) -> PathBuf {
    state_dir(dir).join("sandbox.pid")
}

fn io(what: &Path, e: impl std::fmt::Display) -> LocalError {
    LocalError::Io(format!("{}: {e}", what.display()))
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// The sandbox serving for `dir`, if one is.
pub fn status(dir: &Path) -> Option<Running> {
    let pid: i32 = std::fs::read_to_string(pid_file(dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then(|| Running {
        pid,
        endpoint: env_value(dir, "HCLOUD_ENDPOINT"),
        installer_url: env_value(dir, "NIXOS_INFECT_URL"),
    })
}

fn env_value(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".env")).ok()?;
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

/// Sets the sandbox's lines of `DIR/.env` to `values` (key, value), or with
/// none removes them, keeping the rest.
fn update_env(dir: &Path, values: &[(&str, &str)]) -> Result<(), LocalError> {
    let path = dir.join(".env");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let ours = |l: &str| ENV_KEYS.iter().any(|k| l.starts_with(&format!("{k}=")));
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !ours(l))
        .map(str::to_string)
        .collect();
    lines.extend(values.iter().map(|(k, v)| format!("{k}={v}")));
    let text = if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n"
    };
    std::fs::write(&path, text).map_err(|e| io(&path, e))
}

/// Starts `serve` (a command that serves the sandbox in the foreground and
/// prints `HCLOUD_ENDPOINT=…`, `NIXOS_INFECT_URL=…` and
/// `NIXOS_INFECT_SHA256=…`, given `HCLOUD_TOKEN`) in the background for
/// `dir`, unless one already serves; returns it and whether it was started now.
pub fn up(dir: &Path, mut serve: Command) -> Result<(Running, bool), LocalError> {
    if let Some(r) = status(dir) {
        return Ok((r, false));
    }
    if !rustix::process::geteuid().is_root() {
        return Err(LocalError::NeedsRoot);
    }
    let state = state_dir(dir);
    std::fs::create_dir_all(&state).map_err(|e| io(&state, e))?;
    let token = format!("sandbox-{:016x}", rand::random::<u64>());
    let log_path = state.join("sandbox.log");
    let log = std::fs::File::create(&log_path).map_err(|e| io(&log_path, e))?;
    let err_log = log.try_clone().map_err(|e| io(&log_path, e))?;
    let child = serve
        .env("HCLOUD_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0)
        .spawn()
        .map_err(|e| LocalError::DidNotStart(e.to_string()))?;
    let pid = child.id() as i32;
    let [endpoint, url, sha256] = wait_for_lines(&log_path, pid)?;
    let pids = pid_file(dir);
    std::fs::write(&pids, pid.to_string()).map_err(|e| io(&pids, e))?;
    update_env(
        dir,
        &[
            ("HCLOUD_ENDPOINT", &endpoint),
            ("HCLOUD_TOKEN", &token),
            ("NIXOS_INFECT_URL", &url),
            ("NIXOS_INFECT_SHA256", &sha256),
        ],
    )?;
    let running = Running {
        pid,
        endpoint: Some(endpoint),
        installer_url: Some(url),
    };
    Ok((running, true))
}

/// The values of the [`PRINTED`] lines, within 15 s while the process lives.
fn wait_for_lines(log_path: &Path, pid: i32) -> Result<[String; 3], LocalError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        let value = |key: &str| {
            let prefix = format!("{key}=");
            BufReader::new(text.as_bytes())
                .lines()
                .map_while(Result::ok)
                .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
        };
        if let [Some(a), Some(b), Some(c)] = PRINTED.map(value) {
            return Ok([a, b, c]);
        }
        if !alive(pid) || Instant::now() > deadline {
            return Err(LocalError::DidNotStart(text));
        }
        // Polling a file another process writes: there is nothing to wait on.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops `dir`'s sandbox (if one serves) and takes it out of `.env`.
pub fn down(dir: &Path) -> Result<(), LocalError> {
    if let Some(Running { pid, .. }) = status(dir) {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            return Err(LocalError::DidNotStop(pid));
        }
    }
    let _ = std::fs::remove_file(pid_file(dir));
    update_env(dir, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_file_keeps_its_other_lines() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(".env"),
            "SECRETS_PASS=x\nHCLOUD_TOKEN=old\nNIXOS_INFECT_SHA256=old\n",
        )
        .unwrap();
        let values = [
            ("HCLOUD_ENDPOINT", "http://127.0.0.1:9/v1"),
            ("HCLOUD_TOKEN", "t"),
            (
                "NIXOS_INFECT_URL",
                "http://127.0.0.1:9/installer/nixos-infect",
            ),
            ("NIXOS_INFECT_SHA256", "abc"),
        ];
        update_env(d.path(), &values).unwrap();
        let text = std::fs::read_to_string(d.path().join(".env")).unwrap();
        assert_eq!(
            text,
            "SECRETS_PASS=x\nHCLOUD_ENDPOINT=http://127.0.0.1:9/v1\nHCLOUD_TOKEN=t\n\
             NIXOS_INFECT_URL=http://127.0.0.1:9/installer/nixos-infect\nNIXOS_INFECT_SHA256=abc\n"
        );
        assert_eq!(
            env_value(d.path(), "HCLOUD_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        down(d.path()).unwrap();
        let text = std::fs::read_to_string(d.path().join(".env")).unwrap();
        assert_eq!(text, "SECRETS_PASS=x\n");
        assert_eq!(status(d.path()), None);
    }
}
