//! Secrets on nodes: encrypted with `systemd-creds` on arrival, pruned when no longer referenced.
//!
//! Values travel on SSH stdin only; command lines carry names, never values.

use crate::secrets::{SecretError, SecretStore};
use crate::ssh::{Discard, Remote, SshError, shell_quote};
use age::secrecy::{ExposeSecret, SecretSlice};

/// Where nodes keep their credentials.
pub const NODE_SECRETS: &str = "/root/secrets";

/// Why deploying a secret failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeployError {
    /// The store failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The node failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A name unsafe for a file on the node.
    #[error("invalid secret name `{0}`")]
    BadName(String),
}

fn check(name: &str) -> Result<(), DeployError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(DeployError::BadName(name.into()))
    }
}

/// Pipes `value` into `systemd-creds encrypt` on the node: `/root/secrets/<name>` (0600, folder 0700).
pub async fn deploy_secret(
    remote: &Remote,
    name: &str,
    value: &SecretSlice<u8>,
) -> Result<(), DeployError> {
    check(name)?;
    let path = format!("{NODE_SECRETS}/{name}");
    let cmd = format!(
        "umask 077 && mkdir -p {dir} && chmod 700 {dir} && systemd-creds encrypt --name={n} - {tmp} && mv {tmp} {p}",
        dir = shell_quote(NODE_SECRETS),
        n = shell_quote(name),
        tmp = shell_quote(&format!("{path}.part")),
        p = shell_quote(&path),
    );
    remote
        .run(&cmd, Some(value.expose_secret()), &Discard, None)
        .await?;
    Ok(())
}

/// Removes every credential in `/root/secrets` not named in `keep`; returns what it removed.
pub async fn prune_secrets(remote: &Remote, keep: &[String]) -> Result<Vec<String>, DeployError> {
    let out = remote
        .run(
            &format!("ls -1 {} 2>/dev/null || true", shell_quote(NODE_SECRETS)),
            None,
            &Discard,
            None,
        )
        .await?;
    let mut removed = Vec::new();
    for name in out.stdout.lines().map(str::trim).filter(|n| !n.is_empty()) {
        if keep.iter().any(|k| k == name) || check(name).is_err() {
            continue;
        }
        remote
            .run(
                &format!("rm -f {}", shell_quote(&format!("{NODE_SECRETS}/{name}"))),
                None,
                &Discard,
                None,
            )
            .await?;
        removed.push(name.to_string());
    }
    Ok(removed)
}

/// Runs `command` on the node (fed `stdin`) and stores its stdout as secret
/// `name` (trailing newlines dropped), printing nothing of it.
pub async fn save_output_as_secret(
    remote: &Remote,
    command: &str,
    stdin: Option<&[u8]>,
    store: &SecretStore,
    name: &str,
) -> Result<u32, DeployError> {
    let out = remote.run(command, stdin, &Discard, None).await?;
    let value = out.stdout.trim_end_matches('\n').as_bytes().to_vec();
    Ok(store.store(name, &SecretSlice::from(value))?)
}
