//! NixOS over a provider's stock image, the way it works on Hetzner: fetch
//! nixos-infect on the node from a pinned URL, check its sha256 there before
//! it runs, run it with `NO_REBOOT=1` (its output and exit code are the
//! caller's to log), then reboot and wait for the node to come back with a
//! new boot id and the host key pinned before the reboot.
//!
//! The image is assumed to have what Hetzner's `ubuntu-24.04` ships: bash,
//! curl, tar, coreutils (`sha256sum`) and systemd (`systemctl reboot`).
//!
//! ```text
//!   fetch (curl)  ──►  check sha256 on the node  ──►  NO_REBOOT=1 nixos-infect
//!   unreachable: retryable   mismatch: permanent       non-zero exit: permanent
//!   boot id ──► systemctl reboot ──► SSH again, pinned host key only ──► new boot id
//! ```

use crate::ssh::{
    HostKeys, Knock, LineSink, Remote, SshConfig, SshError, pinned_fingerprint, shell_quote,
};
use std::time::{Duration, Instant};

/// nixos-infect, pinned to one commit of <https://github.com/elitak/nixos-infect>.
///
/// Used whenever the cluster's `.env` sets no `NIXOS_INFECT_URL`: that is
/// every run against the real Hetzner Cloud.
pub const DEFAULT_URL: &str = "https://raw.githubusercontent.com/elitak/nixos-infect/7563801d3ae68c975e4027f4e31a3906dca95f30/nixos-infect";

/// The sha256 of [`DEFAULT_URL`].
///
/// MAINTAINERS: this hash was computed from a mirror of the repository at
/// that commit (`git show 7563801d3ae68c975e4027f4e31a3906dca95f30:nixos-infect
/// | sha256sum`), not from a download of the URL itself: the code was written
/// on a machine without network access. Before a release, someone with network
/// access must verify it: `curl -fsSL "$DEFAULT_URL" | sha256sum` must print
/// exactly this value. A wrong value refuses every real install (permanently,
/// naming both hashes); it can never let another script run.
pub const DEFAULT_SHA256: &str = "4cc3b5f8e4333ab4f02906d80a836c1b36e2887a51abf4eba4d9113b33934393";

/// Where the node keeps the download until its hash is checked.
const DOWNLOAD: &str = "/root/nixos-infect.part";
/// Where the checked installer runs from.
const SCRIPT: &str = "/root/nixos-infect";

/// The installer a node fetches: its URL and the sha256 it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installer {
    /// Where the node fetches it (`curl -fsSL`).
    pub url: String,
    /// Its sha256, 64 lower-case hex digits.
    pub sha256: String,
}

impl Installer {
    /// The pinned nixos-infect ([`DEFAULT_URL`], [`DEFAULT_SHA256`]).
    pub fn pinned() -> Installer {
        Installer {
            url: DEFAULT_URL.into(),
            sha256: DEFAULT_SHA256.into(),
        }
    }

    /// The installer `NIXOS_INFECT_URL` and `NIXOS_INFECT_SHA256` name, each
    /// defaulting to the pinned one. A URL without a hash is refused: nothing
    /// would say what it must contain.
    pub fn from_vars(
        url: Option<String>,
        sha256: Option<String>,
    ) -> Result<Installer, InstallError> {
        let url = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        let sha256 = sha256
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        let (url, sha256) = match (url, sha256) {
            (None, None) => return Ok(Installer::pinned()),
            (Some(_), None) => {
                return Err(InstallError::Config(
                    "NIXOS_INFECT_URL is set without NIXOS_INFECT_SHA256: give the installer's sha256 too".into(),
                ));
            }
            (url, Some(h)) => (url.unwrap_or_else(|| DEFAULT_URL.into()), h),
        };
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InstallError::Config(format!(
                "NIXOS_INFECT_SHA256 `{sha256}` is not a sha256 (64 hex digits)"
            )));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(InstallError::Config(format!(
                "NIXOS_INFECT_URL `{url}` is not an http(s) URL"
            )));
        }
        Ok(Installer { url, sha256 })
    }
}

/// Why installing NixOS failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstallError {
    /// The installer settings are unusable.
    #[error("{0}")]
    Config(String),
    /// The node could not download the installer (retryable).
    #[error("cannot fetch the installer {url} on node `{node}`: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// The installer's URL.
        url: String,
        /// curl's message.
        reason: String,
    },
    /// The download is not the pinned installer (permanent; it never ran).
    #[error(
        "the installer {url} fetched on node `{node}` has sha256 {actual}, expected {expected}: refusing to run it (if it changed on purpose, set NIXOS_INFECT_SHA256)"
    )]
    HashMismatch {
        /// The node.
        node: String,
        /// The installer's URL.
        url: String,
        /// The pinned hash.
        expected: String,
        /// The download's hash.
        actual: String,
    },
    /// SSH failed, or the installer itself exited non-zero.
    #[error(transparent)]
    Ssh(#[from] SshError),
}

impl InstallError {
    /// Whether trying again later may help: a download that failed may work
    /// later; a wrong hash or a failed installer will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            InstallError::Unreachable { .. } => true,
            InstallError::Ssh(e) => e.is_retryable(),
            InstallError::Config(_) | InstallError::HashMismatch { .. } => false,
        }
    }
}

/// What [`install`] found on the node, or did to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node already runs NixOS (`nixos-version`'s answer): nothing was installed.
    AlreadyNixos(String),
    /// The installer ran; the new system boots on the next reboot.
    Installed,
}

/// Exit status of the preparation script when curl failed (its stderr says why).
const FETCH_FAILED: i32 = 90;

/// Installs NixOS unless the node already runs it: fetches `installer` on
/// the node, checks its sha256 there, and only then runs it with
/// `NO_REBOOT=1 PROVIDER=hetznercloud NIX_CHANNEL=<channel>`.
///
/// Two SSH sessions: one asks `nixos-version`, downloads and hashes; the
/// second runs the checked script. The installer's output goes to `sink`;
/// the reboot is the caller's next step.
pub async fn install(
    remote: &Remote,
    installer: &Installer,
    channel: &str,
    sink: &dyn LineSink,
) -> Result<Outcome, InstallError> {
    if let Some(version) = prepare(remote, installer, sink).await? {
        return Ok(Outcome::AlreadyNixos(version));
    }
    let cmd = format!(
        "cd /root && echo {check} | sha256sum -c --status - && mv -f {DOWNLOAD} {SCRIPT} && chmod 700 {SCRIPT} && \
         NO_REBOOT=1 PROVIDER=hetznercloud NIX_CHANNEL={channel} bash {SCRIPT}",
        check = shell_quote(&format!("{}  {DOWNLOAD}", installer.sha256)),
        channel = shell_quote(channel),
    );
    remote.run(&cmd, None, sink, None).await?;
    Ok(Outcome::Installed)
}

/// One session: `nixos-version` (a node on NixOS is left alone: `Some`), else
/// the download with curl and its sha256, checked here against `installer`.
async fn prepare(
    remote: &Remote,
    installer: &Installer,
    sink: &dyn LineSink,
) -> Result<Option<String>, InstallError> {
    let cmd = format!(
        "if v=$(nixos-version 2>/dev/null); then printf 'nixos %s\\n' \"$v\"; exit 0; fi\n\
         command -v curl >/dev/null 2>&1 || {{ echo 'curl: command not found' >&2; exit 127; }}\n\
         rm -f {DOWNLOAD} && curl -fsSL --retry 2 --connect-timeout 20 -o {DOWNLOAD} {url} || exit {FETCH_FAILED}\n\
         set -- $(sha256sum {DOWNLOAD}) && printf 'sha256 %s\\n' \"$1\"",
        url = shell_quote(&installer.url)
    );
    let out = match remote
        .run(&cmd, None, sink, Some(Duration::from_secs(300)))
        .await
    {
        Ok(out) => out,
        Err(SshError::Exit {
            node,
            code: FETCH_FAILED,
            stderr_tail,
            ..
        }) => {
            return Err(InstallError::Unreachable {
                node,
                url: installer.url.clone(),
                reason: match stderr_tail.trim() {
                    "" => "curl failed".to_string(),
                    tail => tail.to_string(),
                },
            });
        }
        Err(e) => return Err(e.into()),
    };
    let stdout = out.stdout.trim();
    if let Some(version) = stdout.strip_prefix("nixos ") {
        return Ok(Some(version.trim().to_string()));
    }
    let actual = stdout
        .strip_prefix("sha256 ")
        .unwrap_or(stdout)
        .trim()
        .to_ascii_lowercase();
    if actual == installer.sha256 {
        return Ok(None);
    }
    let _ = remote
        .run(
            &format!("rm -f {DOWNLOAD}"),
            None,
            &crate::ssh::Discard,
            None,
        )
        .await;
    Err(InstallError::HashMismatch {
        node: remote.node().to_string(),
        url: installer.url.clone(),
        expected: installer.sha256.clone(),
        actual,
    })
}

/// The node's boot id (`/proc/sys/kernel/random/boot_id`), new with every boot.
pub async fn boot_id(remote: &Remote) -> Result<String, SshError> {
    let out = remote
        .run(
            "cat /proc/sys/kernel/random/boot_id",
            None,
            &crate::ssh::Discard,
            Some(Duration::from_secs(20)),
        )
        .await?;
    Ok(out.stdout.trim().to_string())
}

/// A node back from its reboot.
pub struct Rebooted {
    /// A connection that accepted only the host key pinned before the reboot.
    pub remote: Remote,
    /// The boot id it came back with.
    pub boot_id: String,
    /// That host key's SHA256 fingerprint.
    pub host_key: String,
}

/// Reboots the node `remote` is connected to (`systemctl reboot`) and waits
/// up to `patience` for it to answer at `host` with another boot id. The new
/// connection accepts only the key the cluster's `known_hosts` pinned before
/// the reboot: a node that comes back with another key fails with
/// [`SshError::HostKeyChanged`], naming both fingerprints.
pub async fn reboot(
    remote: &Remote,
    cfg: &SshConfig,
    host: &str,
    patience: Duration,
    sink: &dyn LineSink,
) -> Result<Rebooted, SshError> {
    let before = boot_id(remote).await?;
    reboot_from(remote, cfg, host, &before, patience, sink).await
}

/// What [`reboot_into_nixos`] found or did.
pub enum Boot {
    /// The node already ran NixOS (`nixos-version`'s answer): no reboot.
    AlreadyNixos(String),
    /// The node rebooted into what the installer staged.
    Rebooted(Rebooted),
}

/// [`reboot`], unless the node already runs NixOS. One session reads the
/// boot id, asks `nixos-version` and, only if that fails, runs `systemctl
/// reboot`; its first lines are read as they arrive, since the reboot may
/// cut the session before it answers.
pub async fn reboot_into_nixos(
    remote: &Remote,
    cfg: &SshConfig,
    host: &str,
    patience: Duration,
    sink: &dyn LineSink,
) -> Result<Boot, SshError> {
    let node = remote.node().to_string();
    let pinned = pinned(cfg, &node, host).await?;
    let seen = Firsts {
        lines: std::sync::Mutex::new(Vec::new()),
        sink,
    };
    let asked = remote
        .run(
            "cat /proc/sys/kernel/random/boot_id && \
             if v=$(nixos-version 2>/dev/null); then echo \"nixos $v\"; else systemctl reboot; fi",
            None,
            &seen,
            Some(Duration::from_secs(30)),
        )
        .await;
    tracing::debug!("boot id, nixos-version or systemctl reboot: {asked:?}");
    let lines = seen.lines.into_inner().unwrap_or_else(|e| e.into_inner());
    let before = lines.first().cloned().unwrap_or_default();
    if let (Ok(_), Some(version)) = (&asked, lines.get(1).and_then(|l| l.strip_prefix("nixos "))) {
        return Ok(Boot::AlreadyNixos(version.trim().to_string()));
    }
    reboot_asked(asked)?;
    going_down(remote).await;
    if before.is_empty() {
        return Err(SshError::Io {
            node,
            reason: "the node gave no boot id before its reboot".into(),
        });
    }
    let (remote, boot_id) = wait_for_boot(cfg, &node, host, &before, patience).await?;
    Ok(Boot::Rebooted(Rebooted {
        remote,
        boot_id,
        host_key: pinned,
    }))
}

/// Forwards every line to `sink` and keeps the first few of stdout.
struct Firsts<'a> {
    lines: std::sync::Mutex<Vec<String>>,
    sink: &'a dyn LineSink,
}

impl LineSink for Firsts<'_> {
    fn line(&self, stream: crate::ssh::Stream, line: &str) {
        if matches!(stream, crate::ssh::Stream::Stdout) {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.len() < 2 {
                lines.push(line.trim().to_string());
                if lines.len() == 1 {
                    return; // the boot id is ours, not the log's
                }
            }
        }
        self.sink.line(stream, line);
    }
}

/// The fingerprint `known_hosts` pinned for `host`, which the node must still
/// present after its reboot.
async fn pinned(cfg: &SshConfig, node: &str, host: &str) -> Result<String, SshError> {
    pinned_fingerprint(&cfg.known_hosts, host, cfg.port)
        .await
        .ok_or_else(|| SshError::HostKeyNotPinned {
            node: node.into(),
            host: host.into(),
            known_hosts: cfg.known_hosts.display().to_string(),
        })
}

async fn reboot_from(
    remote: &Remote,
    cfg: &SshConfig,
    host: &str,
    before: &str,
    patience: Duration,
    sink: &dyn LineSink,
) -> Result<Rebooted, SshError> {
    let node = remote.node().to_string();
    let pinned = pinned(cfg, &node, host).await?;
    request_reboot(remote, sink).await?;
    going_down(remote).await;
    let (remote, boot_id) = wait_for_boot(cfg, &node, host, before, patience).await?;
    Ok(Rebooted {
        remote,
        boot_id,
        host_key: pinned,
    })
}

/// `systemctl reboot`. The connection may drop before the command answers:
/// that is the reboot under way, not a failure. A command that refuses is.
async fn request_reboot(remote: &Remote, sink: &dyn LineSink) -> Result<(), SshError> {
    let asked = remote
        .run(
            "systemctl reboot",
            None,
            sink,
            Some(Duration::from_secs(30)),
        )
        .await;
    tracing::debug!("systemctl reboot: {asked:?}");
    reboot_asked(asked)
}

/// How long [`going_down`] waits for the old system to drop its connection.
const GOING_DOWN: Duration = Duration::from_secs(5);

/// Waits, up to [`GOING_DOWN`], until the connection the reboot was asked on
/// has dropped: until then the old system's sshd still answers, and an SSH
/// attempt would pay a whole key exchange only to find the old boot id.
/// Past the limit, waiting for the new boot goes on as usual (the boot id
/// still tells the two systems apart).
async fn going_down(remote: &Remote) {
    let started = Instant::now();
    while remote.is_alive().await && started.elapsed() < GOING_DOWN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a command that asked for a reboot did: the connection dropping
/// before it answers is the reboot under way, not a failure.
fn reboot_asked(asked: Result<crate::ssh::RemoteOutput, SshError>) -> Result<(), SshError> {
    match asked {
        Ok(_) => Ok(()),
        Err(SshError::Exit { code: 255 | -1, .. })
        | Err(SshError::Io { .. })
        | Err(SshError::Timeout { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A pinned-key connection to a node whose boot id is no longer `before`.
async fn wait_for_boot(
    cfg: &SshConfig,
    node: &str,
    host: &str,
    before: &str,
    patience: Duration,
) -> Result<(Remote, String), SshError> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(50);
    loop {
        let left = patience.saturating_sub(started.elapsed());
        let r =
            Remote::wait_for_with(cfg, node, host, left, HostKeys::Pinned, Knock::First).await?;
        match boot_id(&r).await {
            Ok(id) if id != before => return Ok((r, id)),
            // Still the old system (going down), or going down right now.
            Ok(_) | Err(_) => {
                let _ = r.close().await;
            }
        }
        if started.elapsed() + wait >= patience {
            return Err(SshError::Unreachable {
                node: node.into(),
                reason: format!("it did not come back from its reboot within {patience:?}"),
            });
        }
        tokio::time::sleep(wait).await;
        wait = wait.mul_f64(1.5).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_pinned_installer() {
        assert_eq!(
            Installer::from_vars(None, None).unwrap(),
            Installer::pinned()
        );
        assert!(DEFAULT_URL.contains("/elitak/nixos-infect/"));
        let commit = DEFAULT_URL.split('/').nth(5).unwrap();
        assert_eq!(commit.len(), 40, "a commit, not a branch: {commit}");
        assert_eq!(DEFAULT_SHA256.len(), 64);
        let empty = Installer::from_vars(Some(" ".into()), Some(String::new())).unwrap();
        assert_eq!(empty, Installer::pinned(), "empty values are unset");
    }

    #[test]
    fn overrides_need_a_hash_and_a_real_one() {
        let e = Installer::from_vars(Some("http://127.0.0.1:9/x".into()), None).unwrap_err();
        assert!(e.to_string().contains("without NIXOS_INFECT_SHA256"), "{e}");
        let e = Installer::from_vars(None, Some("abc".into())).unwrap_err();
        assert!(e.to_string().contains("not a sha256"), "{e}");
        assert!(!e.is_retryable());
        let sha = "A".repeat(64);
        let i = Installer::from_vars(Some("http://127.0.0.1:9/x".into()), Some(sha)).unwrap();
        assert_eq!(i.sha256, "a".repeat(64), "lower-cased");
        let only_hash = Installer::from_vars(None, Some("b".repeat(64))).unwrap();
        assert_eq!(only_hash.url, DEFAULT_URL);
        let e = Installer::from_vars(Some("file:///x".into()), Some("b".repeat(64))).unwrap_err();
        assert!(e.to_string().contains("not an http(s) URL"), "{e}");
    }
}
