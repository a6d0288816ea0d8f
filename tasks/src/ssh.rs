//! [`Remote`]: commands, uploads and port forwards on a node over SSH (openssh, native mux).
//!
//! Host keys are pinned per cluster in its own `known_hosts`: first contact
//! adds the key (accept-new, [`HostKeys::AcceptNew`]), a changed key is a
//! permanent error naming the node and both fingerprints. Where the node must
//! already be known (after a reboot), [`HostKeys::Pinned`] refuses a key that
//! is not pinned yet as well. A non-zero exit is always an error carrying the
//! exit code and the tail of stderr. Secrets travel on stdin, never in argv.

use crate::ssh_error::connect_error;
pub use crate::ssh_error::{AUTH_GRACE, SshError};
use crate::ssh_masters::{Persist, private_dir};
pub use crate::ssh_pool::Pool;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Stdio};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

/// How a cluster's nodes are reached.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// The cluster's private key; `None` uses ssh-agent.
    pub key: Option<PathBuf>,
    /// The cluster's own known_hosts file.
    pub known_hosts: PathBuf,
    /// A short directory for control sockets (socket paths are limited to ~100 bytes).
    pub control_dir: PathBuf,
    /// Login user.
    pub user: String,
    /// SSH port.
    pub port: u16,
    /// Limit of one connection attempt.
    pub connect_timeout: Duration,
    /// Keep masters for the next process ([`crate::ssh_masters`]); `None`
    /// closes them when the process is done with them.
    pub persist: Option<Persist>,
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives a remote command's output line by line, as it comes (the step logger).
pub trait LineSink: Send + Sync {
    /// One line, without its newline.
    fn line(&self, stream: Stream, line: &str);
}

/// A sink that drops every line.
pub struct Discard;

impl LineSink for Discard {
    fn line(&self, _: Stream, _: &str) {}
}

/// What a remote command produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// How a connection treats the host key a node presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeys {
    /// Pin the key on first contact; refuse a key that differs from the pinned one.
    AcceptNew,
    /// Refuse any key but the pinned one, and refuse a node with no pinned key.
    Pinned,
}

/// The SHA256 fingerprint of the key pinned for `host` (on SSH port `port`)
/// in `known_hosts`, if any. Off port 22, ssh pins the key as `[host]:port`.
///
/// ssh-keygen reads the file (its entries may be hashed), as a child the
/// runtime awaits: a `cmd` on many nodes asks this once per node at once.
pub async fn pinned_fingerprint(known_hosts: &Path, host: &str, port: u16) -> Option<String> {
    let entry = match port {
        22 => host.to_string(),
        _ => format!("[{host}]:{port}"),
    };
    let out = tokio::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-F")
        .arg(entry)
        .arg("-f")
        .arg(known_hosts)
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("SHA256:"))
                .map(str::to_string)
        })
}

/// An open connection to one node; close it with [`Remote::close`].
pub struct Remote {
    session: Session,
    node: String,
    host: String,
}

impl Remote {
    /// Connects once, pinning the host key on first contact.
    pub async fn connect(cfg: &SshConfig, node: &str, host: &str) -> Result<Remote, SshError> {
        Remote::connect_with(cfg, node, host, HostKeys::AcceptNew).await
    }

    /// Connects once, checking the host key as `keys` says.
    pub async fn connect_with(
        cfg: &SshConfig,
        node: &str,
        host: &str,
        keys: HostKeys,
    ) -> Result<Remote, SshError> {
        let (control_dir, made) = match &cfg.persist {
            Some(p) => (p.dir.clone(), private_dir(&p.dir)),
            None => (
                cfg.control_dir.clone(),
                std::fs::create_dir_all(&cfg.control_dir),
            ),
        };
        made.map_err(|e| SshError::ControlDir {
            path: control_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = cfg.known_hosts.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A kept master idles out after the chosen time; any other after a
        // minute unused, even if its process died.
        let idle = cfg.persist.as_ref().map_or(60, |p| p.idle.as_secs().max(1));
        let mut b = SessionBuilder::default();
        b.user(cfg.user.clone())
            .port(cfg.port)
            .known_hosts_check(match keys {
                HostKeys::AcceptNew => KnownHosts::Add,
                HostKeys::Pinned => KnownHosts::Strict,
            })
            .user_known_hosts_file(&cfg.known_hosts)
            .control_directory(&control_dir)
            .connect_timeout(cfg.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_persist(openssh::ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(idle as usize).expect("at least one second"),
            ));
        if let Some(key) = &cfg.key {
            b.keyfile(key);
        }
        match b.connect_mux(host).await {
            Ok(session) => Ok(Remote::from_session(session, node, host)),
            Err(e) => Err(connect_error(&e, cfg, node, host).await),
        }
    }

    /// Connects, retrying with backoff while the node is unreachable, for up to `patience`.
    ///
    /// The node is expected up, so SSH is tried at once; knocking starts only
    /// if that fails (see [`Knock`]).
    pub async fn wait_for(
        cfg: &SshConfig,
        node: &str,
        host: &str,
        patience: Duration,
    ) -> Result<Remote, SshError> {
        Remote::wait_for_with(
            cfg,
            node,
            host,
            patience,
            HostKeys::AcceptNew,
            Knock::AfterFailure,
        )
        .await
    }

    /// [`Remote::wait_for`], checking the host key as `keys` says and
    /// knocking as `knock` says.
    pub async fn wait_for_with(
        cfg: &SshConfig,
        node: &str,
        host: &str,
        patience: Duration,
        keys: HostKeys,
        knock: Knock,
    ) -> Result<Remote, SshError> {
        let started = Instant::now();
        // A closed port is cheap to see; an SSH attempt spawns ssh and costs a
        // key exchange. So knock, often (a booting node is noticed within
        // [`KNOCK_MAX`]), and back off further only between SSH attempts.
        let mut knock_wait = Duration::from_millis(25);
        let mut ssh_wait = Duration::from_millis(50);
        let mut skip_knock = knock == Knock::AfterFailure;
        let mut refused_since: Option<Instant> = None;
        loop {
            let knocked = if std::mem::take(&mut skip_knock) {
                Ok(Ok(()))
            } else {
                tokio::time::timeout(
                    cfg.connect_timeout,
                    tokio::net::TcpStream::connect((host, cfg.port)),
                )
                .await
                .map(|r| r.map(drop))
            };
            let (result, wait) = match knocked {
                Ok(Ok(())) => {
                    let wait = ssh_wait;
                    ssh_wait = ssh_wait.mul_f64(1.5).min(Duration::from_secs(2));
                    (Remote::connect_with(cfg, node, host, keys).await, wait)
                }
                Ok(Err(e)) => (
                    Err(SshError::Unreachable {
                        node: node.into(),
                        reason: format!("{host}:{}: {e}", cfg.port),
                    }),
                    knock_wait,
                ),
                Err(_) => (
                    Err(SshError::Unreachable {
                        node: node.into(),
                        reason: format!("{host}:{}: timed out", cfg.port),
                    }),
                    knock_wait,
                ),
            };
            knock_wait = knock_wait.mul_f64(1.5).min(KNOCK_MAX);
            let in_time = started.elapsed() + wait < patience;
            match result {
                Err(e @ SshError::Unreachable { .. }) if in_time => {
                    tracing::debug!("{e}; retrying in {wait:?}");
                    // A refusal counts from the boot that made it: a node
                    // going down and up again starts its grace anew.
                    refused_since = None;
                    tokio::time::sleep(wait).await;
                }
                // A node that has just booted may answer before its keys
                // are in place (cloud-init writes them); a refusal that
                // lasts past the grace is the key's fault.
                Err(e @ SshError::AuthRefused { .. })
                    if in_time
                        && *refused_since.get_or_insert_with(Instant::now) + AUTH_GRACE
                            > Instant::now() =>
                {
                    tracing::debug!("{e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Runs `command` with `sh -c`, feeding `stdin`, streaming lines to `sink`.
    ///
    /// A non-zero exit is [`SshError::Exit`] with the tail of stderr.
    pub async fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        sink: &dyn LineSink,
        timeout: Option<Duration>,
    ) -> Result<RemoteOutput, SshError> {
        let work = self.run_inner(command, stdin, sink);
        match timeout {
            Some(limit) => {
                tokio::time::timeout(limit, work)
                    .await
                    .map_err(|_| SshError::Timeout {
                        node: self.node.clone(),
                        command: command.into(),
                        limit,
                    })?
            }
            None => work.await,
        }
    }

    async fn run_inner(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        sink: &dyn LineSink,
    ) -> Result<RemoteOutput, SshError> {
        let io = |e: &dyn std::fmt::Display| SshError::Io {
            node: self.node.clone(),
            reason: e.to_string(),
        };
        let mut cmd = self.session.command("sh");
        cmd.arg("-c").arg(command);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().await.map_err(|e| io(&e))?;
        if let Some(data) = stdin {
            let mut pipe = child.stdin().take().ok_or_else(|| io(&"no stdin"))?;
            pipe.write_all(data).await.map_err(|e| io(&e))?;
            pipe.shutdown().await.map_err(|e| io(&e))?;
            drop(pipe);
        }
        let out = child.stdout().take().ok_or_else(|| io(&"no stdout"))?;
        let err = child.stderr().take().ok_or_else(|| io(&"no stderr"))?;
        let (stdout, stderr) = tokio::join!(
            lines(out, Stream::Stdout, sink),
            lines(err, Stream::Stderr, sink)
        );
        let output = RemoteOutput { stdout, stderr };
        let status = match child.wait().await {
            Ok(status) => status,
            // openssh reports exit status 127 (command not found) as this error.
            Err(openssh::Error::Remote(_)) => {
                let tail: Vec<&str> = output.stderr.lines().rev().take(20).collect();
                return Err(SshError::Exit {
                    node: self.node.clone(),
                    command: command.into(),
                    code: 127,
                    stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
            Err(e) => return Err(io(&e)),
        };
        if status.success() {
            return Ok(output);
        }
        let tail: Vec<&str> = output.stderr.lines().rev().take(20).collect();
        Err(SshError::Exit {
            node: self.node.clone(),
            command: command.into(),
            code: status.code().unwrap_or(-1),
            stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        })
    }

    /// Writes `data` to `path` on the node with `mode` (data goes over stdin).
    pub async fn upload(&self, data: &[u8], path: &str, mode: u32) -> Result<(), SshError> {
        let q = shell_quote(path);
        let dir = shell_quote(
            Path::new(path)
                .parent()
                .and_then(|p| p.to_str())
                .unwrap_or("/"),
        );
        let cmd = format!(
            "mkdir -p {dir} && umask 077 && cat > {q}.part && chmod {mode:o} {q}.part && mv {q}.part {q}"
        );
        self.run(&cmd, Some(data), &Discard, None).await.map(|_| ())
    }

    /// Copies the local directory tree `local` into `remote_dir`, keeping file modes.
    pub async fn upload_tree(&self, local: &Path, remote_dir: &str) -> Result<(), SshError> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", local)
            .map_err(|e| SshError::Io {
                node: self.node.clone(),
                reason: format!("reading {}: {e}", local.display()),
            })?;
        let archive = builder.into_inner().map_err(|e| SshError::Io {
            node: self.node.clone(),
            reason: e.to_string(),
        })?;
        let dir = shell_quote(remote_dir);
        let cmd = format!("mkdir -p {dir} && tar -C {dir} --no-same-owner -xpf -");
        self.run(&cmd, Some(&archive), &Discard, None)
            .await
            .map(|_| ())
    }

    /// Forwards `local` (on this machine) to `remote` (as seen from the node).
    pub async fn forward(&self, local: SocketAddr, remote: SocketAddr) -> Result<(), SshError> {
        self.session
            .request_port_forward(ForwardType::Local, local, remote)
            .await
            .map_err(|e| SshError::Io {
                node: self.node.clone(),
                reason: format!("port forward {local} -> {remote}: {e}"),
            })
    }

    /// A connection over `session`, an open master to `node` at `host`.
    pub(crate) fn from_session(session: Session, node: &str, host: &str) -> Remote {
        Remote {
            session,
            node: node.into(),
            host: host.into(),
        }
    }

    /// The master behind this connection, and the address it reaches.
    pub(crate) fn into_parts(self) -> (Session, String) {
        (self.session, self.host)
    }

    /// The node this connection reaches.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the connection still works (its mux master answers).
    pub async fn is_alive(&self) -> bool {
        self.session.check().await.is_ok()
    }

    /// Closes the connection and its control socket.
    pub async fn close(self) -> Result<(), SshError> {
        let node = self.node.clone();
        self.session.close().await.map_err(|e| SshError::Io {
            node,
            reason: e.to_string(),
        })
    }
}

/// Streams lines to `sink` and returns the output exactly as it came.
async fn lines(r: impl AsyncRead + Unpin, stream: Stream, sink: &dyn LineSink) -> String {
    let mut all = Vec::new();
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                sink.line(stream, line.trim_end_matches(['\n', '\r']));
                all.extend_from_slice(&buf);
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Quotes a word for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// When [`Remote::wait_for_with`] knocks on the node's SSH port before it
/// tries SSH. A knock that finds the port open is a connection sshd forks
/// for, so it is worth it only while the port is likely closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knock {
    /// Before every SSH attempt: the node is going down or booting (a reboot).
    First,
    /// Only after an SSH attempt failed: the node is expected up.
    AfterFailure,
}

/// The longest pause between two knocks on a node's closed SSH port.
const KNOCK_MAX: Duration = Duration::from_millis(200);
