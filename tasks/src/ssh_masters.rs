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

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `$XDG_RUNTIME_DIR/nix-infra-ssh` where that folder is ours alone (not
/// after `sudo -E`, say), else `/tmp/nix-infra-ssh-<uid>` (/tmp's sticky bit
/// keeps others from renaming what we made there).
fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(run) if run.is_absolute() && check_private(&run).is_ok() => run.join("nix-infra-ssh"),
        _ => std::env::temp_dir().join(format!("nix-infra-ssh-{}", me())),
    }
}

/// Refuses `d` unless it is a directory (not a symlink) of this user that
/// nobody else may enter.
fn check_private(d: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(d)?;
    let mode = m.permissions().mode() & 0o777;
    if !m.is_dir() || m.uid() != me() || mode & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a private directory of uid {} (owner uid {}, mode {mode:o}); \
             remove it, or use --ssh-persist 0",
            d.display(),
            me(),
            m.uid()
        )));
    }
    Ok(())
}

/// Checks `dir` and its parent with [`check_private`]: a control socket
/// there would let whoever else can write them run commands on the nodes.
fn check_private_tree(dir: &Path) -> std::io::Result<()> {
    for d in [dir.parent(), Some(dir)].into_iter().flatten() {
        check_private(d)?;
    }
    Ok(())
}

/// Creates `dir` (and its parent) with mode 0700, then refuses either if it
/// is a symlink, belongs to another user, or is open to others.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    for d in [dir.parent(), Some(dir)].into_iter().flatten() {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    check_private_tree(dir)
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

    /// `node`'s record, if the directory is still private and the record
    /// names a socket of ours in a master's folder right inside it.
    fn read(&self, node: &str) -> Option<Record> {
        self.read_any(node).filter(|r| self.is_ours(&r.ctl))
    }

    /// `node`'s record as it is on disk, whatever it names.
    fn read_any(&self, node: &str) -> Option<Record> {
        check_private_tree(&self.dir).ok()?;
        let text = std::fs::read_to_string(self.record_path(node)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether `ctl` is `<dir>/.ssh-connection…/master`, a socket of this user.
    fn is_ours(&self, ctl: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        let (Some(folder), Some("master")) =
            (ctl.parent(), ctl.file_name().and_then(|n| n.to_str()))
        else {
            return false;
        };
        let in_dir = folder.parent() == Some(self.dir.as_path())
            && folder
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".ssh-connection") && !n.contains(".."));
        in_dir
            && std::fs::symlink_metadata(ctl)
                .is_ok_and(|m| m.file_type().is_socket() && m.uid() == me())
    }

    /// A kept master for `node` at `host` that still holds (same address,
    /// user, key and pinned host key) and answers; any other is closed.
    pub(crate) async fn resume(&self, cfg: &SshConfig, node: &str, host: &str) -> Option<Session> {
        let record = self.read(node)?;
        let pinned = pinned_fingerprint(&cfg.known_hosts, host, cfg.port).await;
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
        let pinned = pinned_fingerprint(&cfg.known_hosts, host, cfg.port).await;
        let safe = check_private_tree(&self.dir).is_ok() && self.is_ours(session.control_socket());
        let (Some(host_key), true) = (pinned, safe) else {
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
        match self.read_any(node) {
            Some(record) if self.is_ours(&record.ctl) => {
                self.discard(node, &record).await;
                true
            }
            // A dead master's record, or one naming a socket not ours: only the record goes.
            Some(_) => {
                let _ = std::fs::remove_file(self.record_path(node));
                false
            }
            None => false,
        }
    }

    /// Closes every kept master of the cluster, and clears what dead ones
    /// left; returns how many masters were still up.
    pub async fn close_all(&self) -> std::io::Result<usize> {
        let mut closed = 0;
        match check_private_tree(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            other => other?,
        }
        let entries = std::fs::read_dir(&self.dir)?;
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(".ssh-connection") {
                let ctl = path.join("master");
                if self.is_ours(&ctl) && stop(&ctl).await {
                    closed += 1;
                }
                let _ = std::fs::remove_dir_all(&path);
            } else if name.ends_with(".master") || name.contains(".tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(closed)
    }

    /// Stops `record`'s master and removes its socket folder and the record
    /// (a record comes from [`Persist::read`]: its socket is in a folder of ours).
    async fn discard(&self, node: &str, record: &Record) {
        let _ = stop(&record.ctl).await;
        if let Some(folder) = record.ctl.parent() {
            let _ = std::fs::remove_dir_all(folder);
        }
        let path = self.record_path(node);
        if self.read_any(node).as_ref() == Some(record) {
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

    #[tokio::test]
    async fn a_record_pointing_outside_its_folder_is_not_used_or_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("run/masters");
        private_dir(&dir).unwrap();
        let p = Persist {
            dir: dir.clone(),
            idle: Duration::from_secs(60),
        };
        let victim = t.path().join("run/keep-me");
        std::fs::create_dir_all(victim.join("sub")).unwrap();
        for ctl in [
            victim.join("master"),
            dir.join("../master"),
            dir.join(".ssh-connectionX/../../keep-me/master"),
            dir.join(".ssh-connectionY/master"),
        ] {
            let record = Record {
                host: "127.0.0.1".into(),
                port: 22,
                user: "root".into(),
                key: None,
                host_key: "SHA256:x".into(),
                ctl,
            };
            std::fs::write(
                dir.join("n1.master"),
                serde_json::to_string(&record).unwrap(),
            )
            .unwrap();
            assert!(p.read("n1").is_none(), "{}", record.ctl.display());
            assert!(!p.close("n1").await);
        }
        assert!(victim.join("sub").exists(), "nothing outside was removed");
        // A directory others may write is not read at all.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(p.close_all().await.is_err());
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
