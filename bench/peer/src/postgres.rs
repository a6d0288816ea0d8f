//! One throw-away Postgres 15 in a temp directory, on 127.0.0.1, with default durability.
//!
//! The same recipe as `testkit::Postgres` (initdb as the `postgres` user when run as
//! root, `setpriv --pdeathsig KILL` so the server dies with this process, SIGQUIT on
//! drop), plus what this benchmark needs and testkit has no knob for:
//! `shared_preload_libraries=pg_stat_statements` and `track_wal_io_timing=on`.
//! fsync, synchronous_commit and full_page_writes are passed explicitly as `on`, their
//! defaults, so a changed default elsewhere cannot creep in.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; stopped (immediate shutdown) on drop.
pub struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// `$PG_BIN`, or Debian's Postgres 15.
fn bin(name: &str) -> PathBuf {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(name)
}

/// `program` under `setpriv --pdeathsig KILL`, as `postgres` when this process is root.
fn guarded(program: &Path, as_postgres: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL"]);
    if as_postgres {
        cmd.args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--init-groups",
        ]);
    }
    cmd.arg(program);
    cmd
}

impl Server {
    /// initdb, then start the server and wait until it accepts connections.
    pub fn start() -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("nix-infra-bench-peer-")
            .tempdir()?;
        let root = rustix::process::geteuid().is_root();
        if root {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()?
                .success();
            if !ok {
                bail!("cannot chown the data directory to `postgres` (is postgresql installed?)");
            }
        }
        let data = dir.path().join("data");
        let out = guarded(&bin("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdin(Stdio::null())
            .output()
            .context("run initdb (set PG_BIN if Postgres 15 is elsewhere)")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = guarded(&bin("postgres"), root)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "max_connections=200"])
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "full_page_writes=on"])
            .args(["-c", "shared_preload_libraries=pg_stat_statements"])
            .args(["-c", "track_wal_io_timing=on"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start postgres")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("postgres exited ({status}): {log}");
            }
            let ready = Command::new(bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                .status()?;
            if ready.success() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("postgres did not accept connections in 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server {
            child,
            port,
            _dir: dir,
        })
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `setpriv` execs postgres, so the child is the postmaster. SIGQUIT is its
        // immediate shutdown; the backends follow it.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
