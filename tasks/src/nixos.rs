//! Node bootstrap: render a cluster's Nix files, upload them, rebuild, verify.
//! Installing NixOS over a provider's image and rebooting into it is
//! [`crate::install`].
//!
//! Every step checks the remote exit code; a failed `nixos-rebuild` reports
//! the Nix parser's message instead of success.

use crate::ssh::{LineSink, Remote, SshError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why bootstrapping a node failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BootstrapError {
    /// Placeholders without a value, per file.
    #[error("missing values for placeholders: {}", describe(.0))]
    MissingKeys(BTreeMap<String, BTreeSet<String>>),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The remote side failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
}

fn describe(m: &BTreeMap<String, BTreeSet<String>>) -> String {
    m.iter()
        .map(|(f, keys)| {
            format!(
                "{f}: {}",
                keys.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies `local` into a temp dir with every `[%%key%%]` filled from `vars`,
/// keeping modes; fails listing every missing key of every file.
pub fn render_tree(
    local: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<tempfile::TempDir, BootstrapError> {
    let io = |e: std::io::Error| BootstrapError::Io(format!("{}: {e}", local.display()));
    let out = tempfile::tempdir().map_err(io)?;
    let mut missing = BTreeMap::new();
    for src in files(local).map_err(io)? {
        let rel = src.strip_prefix(local).unwrap_or(&src);
        let dst = out.path().join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let bytes = std::fs::read(&src).map_err(io)?;
        match String::from_utf8(bytes) {
            Ok(text) => match crate::render(&text, vars) {
                Ok(rendered) => std::fs::write(&dst, rendered).map_err(io)?,
                Err(crate::MissingKeys(keys)) => {
                    missing.insert(rel.display().to_string(), keys);
                    continue;
                }
            },
            // Binary files travel as they are.
            Err(e) => std::fs::write(&dst, e.into_bytes()).map_err(io)?,
        }
        let mode = std::fs::metadata(&src).map_err(io)?.permissions();
        std::fs::set_permissions(&dst, mode).map_err(io)?;
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(BootstrapError::MissingKeys(missing))
    }
}

/// Renders `local` and uploads it to the node's `/etc/nixos`.
pub async fn push_config(
    remote: &Remote,
    local: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<(), BootstrapError> {
    let rendered = render_tree(local, vars)?;
    remote.upload_tree(rendered.path(), "/etc/nixos").await?;
    Ok(())
}

/// Runs `nixos-rebuild switch`; a configuration that does not evaluate fails with Nix's message.
pub async fn rebuild(remote: &Remote, sink: &dyn LineSink) -> Result<(), SshError> {
    rebuild_with(remote, &[], sink).await
}

/// [`rebuild`] with more options (`--fast`, `--impure`, `--option name value`).
pub async fn rebuild_with(
    remote: &Remote,
    options: &[String],
    sink: &dyn LineSink,
) -> Result<(), SshError> {
    let mut cmd = String::from("nixos-rebuild switch");
    for o in options {
        cmd.push(' ');
        cmd.push_str(&crate::ssh::shell_quote(o));
    }
    remote.run(&cmd, None, sink, None).await.map(|_| ())
}

/// The node's NixOS version; fails if the node is not running NixOS.
pub async fn verify(remote: &Remote) -> Result<String, SshError> {
    let out = remote
        .run("nixos-version", None, &crate::ssh::Discard, None)
        .await?;
    Ok(out.stdout.trim().to_string())
}
