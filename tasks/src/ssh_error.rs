//! [`SshError`]: why an SSH operation failed, whether trying again may help,
//! and what a failed connect means (a changed host key, a refused login, or a
//! node not reachable yet).

use crate::ssh::{SshConfig, pinned_fingerprint};
use std::time::Duration;

/// Why an SSH operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SshError {
    /// The node presented another host key than the one pinned for it.
    #[error(
        "host key of node `{node}` changed: known {known}, presented {presented}; if the node was re-created, remove its known_hosts entry"
    )]
    HostKeyChanged {
        /// The node.
        node: String,
        /// Fingerprint in the cluster's known_hosts.
        known: String,
        /// Fingerprint the node presented.
        presented: String,
    },
    /// The node could not be reached (yet).
    #[error("cannot reach node `{node}`: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The node's sshd refused the login: the key is not one it accepts for
    /// the user. Not retried beyond [`AUTH_GRACE`]: another try with the
    /// same key gets the same answer.
    #[error(
        "node `{node}` refused login `{user}` with {key}: {reason}; is the key in the node's authorized keys (SSH_KEY, --ssh-key)?"
    )]
    AuthRefused {
        /// The node.
        node: String,
        /// The login.
        user: String,
        /// The private key offered (its path), or what ssh offers by default.
        key: String,
        /// What ssh said.
        reason: String,
    },
    /// Strict checking was asked for and no key is pinned for the node.
    #[error(
        "no host key of node `{node}` ({host}) is pinned in {known_hosts}: refusing to trust the key it presents now"
    )]
    HostKeyNotPinned {
        /// The node.
        node: String,
        /// Its address.
        host: String,
        /// The cluster's known_hosts file.
        known_hosts: String,
    },
    /// The command exited non-zero.
    #[error("`{command}` on node `{node}` exited with {code}: {stderr_tail}")]
    Exit {
        /// The node.
        node: String,
        /// The command (never carries secrets: those go on stdin).
        command: String,
        /// Exit code (-1 if killed by a signal).
        code: i32,
        /// The last lines of stderr.
        stderr_tail: String,
    },
    /// The command ran out of time.
    #[error("`{command}` on node `{node}` timed out after {limit:?}")]
    Timeout {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// The limit.
        limit: Duration,
    },
    /// The folder for control sockets cannot be made, or is not safe to use.
    #[error("SSH control directory {path}: {reason}")]
    ControlDir {
        /// The folder.
        path: String,
        /// Why.
        reason: String,
    },
    /// Local I/O or protocol trouble.
    #[error("ssh to node `{node}`: {reason}")]
    Io {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
}

impl SshError {
    /// Whether trying again later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. } | SshError::Timeout { .. } | SshError::Io { .. }
        )
    }
}

/// What `e`, openssh's answer to a connect to `node` at `host`, means.
pub(crate) async fn connect_error(
    e: &openssh::Error,
    cfg: &SshConfig,
    node: &str,
    host: &str,
) -> SshError {
    let text = format!(
        "{e}: {}",
        std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    if text.contains("IDENTIFICATION HAS CHANGED") || text.contains("Host key verification failed")
    {
        let presented = text
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(|w| w.trim_end_matches('.').to_string())
            .unwrap_or_else(|| "(unknown)".into());
        let Some(known) = pinned_fingerprint(&cfg.known_hosts, host, cfg.port).await else {
            return SshError::HostKeyNotPinned {
                node: node.into(),
                host: host.into(),
                known_hosts: cfg.known_hosts.display().to_string(),
            };
        };
        return SshError::HostKeyChanged {
            node: node.into(),
            known,
            presented,
        };
    }
    // sshd's own refusal only ("user@host: Permission denied
    // (publickey)."), as openssh classifies it; not a socket
    // folder's EACCES, nor a connect() that a firewall denied.
    let refused = matches!(e, openssh::Error::Connect(io)
        if io.kind() == std::io::ErrorKind::PermissionDenied);
    if refused {
        return SshError::AuthRefused {
            node: node.into(),
            user: cfg.user.clone(),
            key: cfg.key.as_ref().map_or_else(
                || "ssh's default keys".to_string(),
                |k| format!("key {}", k.display()),
            ),
            reason: text.trim().trim_end_matches('.').to_string(),
        };
    }
    SshError::Unreachable {
        node: node.into(),
        reason: text.trim().to_string(),
    }
}

/// How long [`Remote::wait_for`](crate::ssh::Remote::wait_for) goes on trying a node that refuses the
/// login: long enough for a just-booted server to get its keys, short
/// enough that a wrong key fails the step at once instead of after its
/// whole patience.
pub const AUTH_GRACE: Duration = Duration::from_secs(10);
