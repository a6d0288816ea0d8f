//! [`Postgres`]: a throwaway PostgreSQL server for one test process.

use crate::process::{free_port, guarded, is_root, pg_bin};
use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A PostgreSQL server in a temp directory, listening on 127.0.0.1; stopped on drop.
pub struct Postgres {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    next_db: AtomicUsize,
}

impl Postgres {
    /// Starts a server tuned for tests (no fsync: a test never outlives an OS crash).
    pub fn start() -> io::Result<Postgres> {
        Self::start_with(&[
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ])
    }

    /// Starts a server with default durability (fsync and synchronous commit on), for benchmarks.
    pub fn start_durable() -> io::Result<Postgres> {
        Self::start_with(&[])
    }

    /// [`Postgres::start_durable`] with more server settings (`name=value`,
    /// each given as `-c`), e.g. `shared_preload_libraries=pg_stat_statements`.
    pub fn start_durable_with(settings: &[&str]) -> io::Result<Postgres> {
        Self::start_with(settings)
    }

    fn start_with(settings: &[&str]) -> io::Result<Postgres> {
        let dir = tempfile::Builder::new().prefix("nix-infra-pg-").tempdir()?;
        let user = is_root().then_some("postgres");
        if user.is_some() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(io::Error::other(
                    "cannot chown the data directory to `postgres` (is the postgresql package installed?)",
                ));
            }
        }
        let data = dir.path().join("data");
        let out = guarded(&pg_bin("initdb")?, user)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            match Self::launch(&data, dir.path(), port, user, settings) {
                Ok(child) => {
                    return Ok(Postgres {
                        child,
                        port,
                        dir,
                        next_db: AtomicUsize::new(0),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    fn launch(
        data: &Path,
        dir: &Path,
        port: u16,
        user: Option<&str>,
        settings: &[&str],
    ) -> io::Result<Child> {
        let log = std::fs::File::create(dir.join(format!("postgres-{port}.log")))?;
        let mut cmd = guarded(&pg_bin("postgres")?, user);
        cmd.arg("-D")
            .arg(data)
            .arg("-k")
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "max_connections=200"]);
        for setting in settings {
            cmd.args(["-c", setting]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join(format!("postgres-{port}.log")))
                    .unwrap_or_default();
                return Err(io::Error::other(format!(
                    "postgres exited ({status}): {log}"
                )));
            }
            let ready = Command::new(pg_bin("pg_isready")?)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                .status()?;
            if ready.success() {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(
                    "postgres did not accept connections in 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> io::Result<String> {
        let name = format!("db_{}", self.next_db.fetch_add(1, Ordering::SeqCst) + 1);
        let out = Command::new(pg_bin("createdb")?)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "createdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(self.url(&name))
    }

    /// The server's log, for diagnosing a failed test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("postgres-{}.log", self.port)))
            .unwrap_or_default()
    }
}

impl Postgres {
    /// The server's pid, to check it is gone after drop.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // `setpriv` execs postgres, so the child's pid is the postmaster's.
        // SIGQUIT is Postgres's immediate shutdown; its backends follow.
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
