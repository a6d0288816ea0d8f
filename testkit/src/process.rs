//! Helpers for child processes: free ports, binaries, process ownership.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A SQLite URL for a fresh file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.db").display())
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command that runs `program` under `setpriv --pdeathsig KILL`, as `user` when given.
pub(crate) fn guarded(program: &Path, user: Option<&str>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg("--pdeathsig").arg("KILL");
    if let Some(u) = user {
        cmd.args(["--reuid", u, "--regid", u, "--init-groups"]);
    }
    cmd.arg(program);
    cmd
}

/// Finds a Postgres server binary: `$PG_BIN`, `pg_config --bindir`, or the newest Debian install.
pub(crate) fn pg_bin(name: &str) -> std::io::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(Path::new(&dir).join(name));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join(name).exists() {
            return Ok(dir.join(name));
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no Postgres `{name}` found: run scripts/setup.sh (or set PG_BIN)"),
            )
        })
}
