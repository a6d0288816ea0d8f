//! SSH masters that outlive the process, so a `cmd` run again seconds later
//! pays no handshake: OpenSSH's `ControlPersist`, kept per cluster.
//!
//! A cluster's masters live in one private directory ([`control_dir_for`]:
//! `$XDG_RUNTIME_DIR/nix-infra-ssh/<hash>` or `/tmp/nix-infra-ssh-<uid>/<hash>`,
//! both 0700 and checked to be ours), outside the repo. Each node has a record
//! there naming its master's control socket and what the master was opened
//! for: address, port, user, key, and the host key pinned when it was kept.
//! A master is reused only while all of those still hold and it answers; a
//! changed or forgotten host key (a re-created node) or another address
//! closes it and a new one is opened. A master nobody uses for
//! [`Persist::idle`] exits by itself (`ControlPersist=<idle>s`).
//!
//! ```text
//!   process 1: Pool::get ─► connect ─► Pool::close_all ─► keep (record + socket)
//!   process 2: Pool::get ─► resume (record matches, master answers) ─► no handshake
//! ```

use crate::ssh::{SshConfig, SshError, pinned_fingerprint};
use openssh::Session;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a cluster keeps masters between processes, and for how long an idle one lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// The cluster's private control directory ([`control_dir_for`]).
    pub dir: PathBuf,
    /// How long a master nobody uses stays up (at least one second).
    pub idle: Duration,
}

/// The private control directory of the cluster whose repo is `cluster_dir`.
///
/// Socket paths are limited to about 100 bytes, so the repo is named by a
/// short hash of its absolute path, not by the path itself.
pub fn control_dir_for(cluster_dir: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(cluster_dir).unwrap_or_else(|_| cluster_dir.to_path_buf());
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    base_dir().join(hash)
}

fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(run) if run.is_absolute() && run.is_dir() => run.join("nix-infra-ssh"),
        _ => std::env::temp_dir().join(format!(
            "nix-infra-ssh-{}",
            rustix::process::geteuid().as_raw()
        )),
    }
}

/// Creates `dir` (and its parent) with mode 0700, and refuses a directory
/// that is a symlink, belongs to another user, or is open to others: a
/// control socket there would let them run commands on the nodes.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let me = rustix::process::geteuid().as_raw();
    for d in [dir.parent(), Some(dir)].into_iter().flatten() {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let m = std::fs::symlink_metadata(d)?;
        let mode = m.permissions().mode() & 0o777;
        if !m.is_dir() || m.uid() != me || mode & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "{} is not a private directory of uid {me} (owner uid {}, mode {mode:o}); \
                 remove it, or use --ssh-persist 0",
                d.display(),
                m.uid()
            )));
        }
    }
    Ok(())
}

/// What a kept master was opened for; it is reused only while all of it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    host: String,
    port: u16,
    user: String,
    key: Option<PathBuf>,
    /// The SHA256 fingerprint pinned for the host when the master was kept.
    host_key: String,
    ctl: PathBuf,
}

impl Record {
    fn opened_for(&self, cfg: &SshConfig, host: &str) -> bool {
        self.host == host && self.port == cfg.port && self.user == cfg.user && self.key == cfg.key
    }
}

/// The file name of `node`'s record: the name where it is plain, hex otherwise.
fn record_name(node: &str) -> String {
    let plain = !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("{node}.master")
    } else {
        let hex: String = Sha256::digest(node.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("x{hex}.master")
    }
}

fn io_error(node: &str, e: impl std::fmt::Display) -> SshError {
    SshError::Io {
        node: node.into(),
        reason: e.to_string(),
    }
}

impl Persist {
    /// The record of `node`'s master.
    fn record_path(&self, node: &str) -> PathBuf {
        self.dir.join(record_name(node))
    }

    fn read(&self, node: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.record_path(node)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// A kept master for `node` at `host` that still holds (same address,
    /// user, key and pinned host key) and answers; any other is closed.
    pub(crate) async fn resume(&self, cfg: &SshConfig, node: &str, host: &str) -> Option<Session> {
        let record = self.read(node)?;
        let pinned = pinned_fingerprint(&cfg.known_hosts, host, cfg.port);
        if !record.opened_for(cfg, host) || pinned.as_deref() != Some(record.host_key.as_str()) {
            tracing::debug!("node {node}: its kept SSH master no longer holds; closing it");
            self.discard(node, &record).await;
            return None;
        }
        let session = Session::resume_mux(record.ctl.clone().into_boxed_path(), None);
        if session.check().await.is_err() {
            self.discard(node, &record).await;
            return None;
        }
        Some(session)
    }

    /// Keeps the master of `session` (to `node` at `host`) for the next
    /// process. Without a pinned host key to tie it to, it is closed instead.
    pub(crate) async fn keep(
        &self,
        cfg: &SshConfig,
        node: &str,
        host: &str,
        session: Session,
    ) -> Result<(), SshError> {
        let Some(host_key) = pinned_fingerprint(&cfg.known_hosts, host, cfg.port) else {
            return session.close().await.map_err(|e| io_error(node, e));
        };
        let (ctl, _log) = session.detach();
        let record = Record {
            host: host.into(),
            port: cfg.port,
            user: cfg.user.clone(),
            key: cfg.key.clone(),
            host_key,
            ctl: ctl.into(),
        };
        if let Some(old) = self.read(node).filter(|old| old.ctl != record.ctl) {
            self.discard(node, &old).await;
        }
        let path = self.record_path(node);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_string(&record).map_err(|e| io_error(node, e))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| io_error(node, format!("{}: {e}", path.display())))
    }

    /// Closes `node`'s kept master, if any (the node is deleted or rebooting).
    pub async fn close(&self, node: &str) -> bool {
        match self.read(node) {
            Some(record) => {
                self.discard(node, &record).await;
                true
            }
            None => false,
        }
    }

    /// Closes every kept master of the cluster, and clears what dead ones
    /// left; returns how many masters were still up.
    pub async fn close_all(&self) -> std::io::Result<usize> {
        let mut closed = 0;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(".ssh-connection") {
                let ctl = path.join("master");
                if ctl.exists() && stop(&ctl).await {
                    closed += 1;
                }
                let _ = std::fs::remove_dir_all(&path);
            } else if name.ends_with(".master") || name.contains(".tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(closed)
    }

    /// Stops `record`'s master and removes its socket folder and the record.
    async fn discard(&self, node: &str, record: &Record) {
        let _ = stop(&record.ctl).await;
        // Only a folder of ours: the record is read from disk.
        if let Some(folder) = record.ctl.parent()
            && folder.parent() == Some(self.dir.as_path())
        {
            let _ = std::fs::remove_dir_all(folder);
        }
        let path = self.record_path(node);
        if self.read(node).as_ref() == Some(record) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Asks the master behind `ctl` to stop; whether one answered.
async fn stop(ctl: &Path) -> bool {
    let session = Session::resume_mux(ctl.to_path_buf().into_boxed_path(), None);
    session.check().await.is_ok() && session.close().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_file_names_whatever_the_node_is_called() {
        assert_eq!(record_name("worker-1"), "worker-1.master");
        for odd in ["../x", "a/b", "", ".", "é", &"n".repeat(65)] {
            let name = record_name(odd);
            assert!(
                name.starts_with('x') && !name.contains('/'),
                "{odd:?}: {name}"
            );
        }
        assert_ne!(record_name("a/b"), record_name("a/c"));
    }

    #[test]
    fn control_dirs_are_short_and_per_repo() {
        let a = control_dir_for(Path::new("/srv/cluster-a"));
        let b = control_dir_for(Path::new("/srv/cluster-b"));
        assert_ne!(a, b);
        assert_eq!(a, control_dir_for(Path::new("/srv/cluster-a")));
        // Room for `.ssh-connectionXXXXXX/master` under the ~104-byte limit.
        assert!(a.as_os_str().len() < 64, "{}", a.display());
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("run/masters");
        private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains("not a private directory") && e.contains("755"),
            "{e}"
        );
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(private_dir(&link).is_err(), "a symlink is not taken");
    }
}
