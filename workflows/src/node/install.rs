//! The NixOS half of provisioning, on a server that starts as the provider's
//! stock image: `install/<node>` → `reboot/<node>` → `verify/<node>`.
//!
//! - `install` fetches nixos-infect on the node (the pinned default, or
//!   `NIXOS_INFECT_URL` with `NIXOS_INFECT_SHA256` from the cluster's env),
//!   checks its sha256 there and runs it with `NO_REBOOT=1`, its output in
//!   the step log. A node that already runs NixOS is left alone. A download
//!   that fails is retried; a wrong hash or a failing installer is not.
//! - `reboot` reboots into the installed system and waits for the node to
//!   answer with a new boot id, over a connection that accepts only the host
//!   key pinned before the reboot.
//! - `verify` asks `nixos-version`.

use super::steps::LogSink;
use super::{CONNECTIONS, NodeParams, NodesInput, address, remote, ssh_error, step_name};
use engine::{Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tasks::install::{Boot, InstallError, Installer, Outcome};

/// How long a node may take to come back from its reboot.
const REBOOT_PATIENCE: Duration = Duration::from_secs(600);

/// The installer the cluster's env names (`NIXOS_INFECT_URL`,
/// `NIXOS_INFECT_SHA256`), else the pinned nixos-infect.
pub(crate) fn installer(i: &NodesInput) -> Result<Installer, StepError> {
    Installer::from_vars(i.env("NIXOS_INFECT_URL"), i.env("NIXOS_INFECT_SHA256"))
        .map_err(install_error)
}

fn install_error(e: InstallError) -> StepError {
    if e.is_retryable() {
        StepError::retryable(e)
    } else {
        StepError::permanent(e)
    }
}

/// `install/<node>`: NixOS installed over the provider's image, not yet booted.
pub struct Install;

/// Whether `install/<node>` installed anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    /// `false` when the node already ran NixOS.
    pub installed: bool,
}

impl Step for Install {
    const KIND: &'static str = "install";
    type Params = NodeParams;
    type Output = Installed;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Installed, StepError> {
        let i: NodesInput = ctx.input()?;
        let r = remote(&ctx, &i).await?;
        let installer = installer(&i)?;
        ctx.log.info(format!(
            "installing {} with {} (sha256 {}) unless the node runs NixOS",
            i.channel, installer.url, installer.sha256
        ));
        let sink = LogSink(ctx.log.clone());
        // Idempotent: a node already on NixOS is left as it is.
        match tasks::install::install(&r, &installer, &i.channel, &sink)
            .await
            .map_err(install_error)?
        {
            Outcome::AlreadyNixos(version) => {
                ctx.log.info(format!("already runs NixOS ({version})"));
                Ok(Installed { installed: false })
            }
            Outcome::Installed => {
                ctx.log
                    .info(format!("installed {}; it runs after the reboot", i.channel));
                Ok(Installed { installed: true })
            }
        }
    }
}

/// `reboot/<node>`: the node runs the system `install/<node>` installed.
pub struct Reboot;

/// What `reboot/<node>` did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rebooted {
    /// `false` when the node already ran NixOS (nothing to boot into).
    pub rebooted: bool,
    /// The boot id the node came back with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The SHA256 fingerprint of its host key, the same before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

impl Step for Reboot {
    const KIND: &'static str = "reboot";
    type Params = NodeParams;
    type Output = Rebooted;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Rebooted, StepError> {
        let i: NodesInput = ctx.input()?;
        let r = remote(&ctx, &i).await?;
        reboot_into_nixos(&ctx, &i, &p, &r).await
    }
}

/// Reboots the step's node unless it already runs NixOS (idempotent: once
/// the node answers as NixOS, the reboot is behind it), and hands the
/// pinned-key connection it came back on to the pool, for the node's next steps.
async fn reboot_into_nixos(
    ctx: &StepContext,
    i: &NodesInput,
    p: &NodeParams,
    r: &Arc<tasks::ssh::Remote>,
) -> Result<Rebooted, StepError> {
    let ip = address(ctx)?;
    let cfg = super::node_ssh_config(ctx, i)?;
    ctx.log
        .info("rebooting (systemctl reboot) unless the node runs NixOS");
    let sink = LogSink(ctx.log.clone());
    // No step may pick up the connection the reboot is about to drop.
    CONNECTIONS.forget(p.node.as_str()).await;
    let boot = tasks::install::reboot_into_nixos(r, &cfg, &ip, REBOOT_PATIENCE, &sink).await;
    let back = match boot.map_err(ssh_error)? {
        Boot::AlreadyNixos(version) => {
            CONNECTIONS.put(&cfg, p.node.as_str(), &ip, r.clone()).await;
            ctx.log
                .info(format!("already runs NixOS ({version}): no reboot"));
            return Ok(Rebooted {
                rebooted: false,
                boot_id: None,
                host_key: None,
            });
        }
        Boot::Rebooted(back) => back,
    };
    ctx.log.info(format!(
        "back with boot id {} and the pinned host key {}",
        back.boot_id, back.host_key
    ));
    let out = Rebooted {
        rebooted: true,
        boot_id: Some(back.boot_id),
        host_key: Some(back.host_key),
    };
    CONNECTIONS
        .put(&cfg, p.node.as_str(), &ip, Arc::new(back.remote))
        .await;
    Ok(out)
}

/// `verify/<node>`: the node answers as NixOS.
pub struct Verify;

/// The NixOS a node runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// `nixos-version`'s answer.
    pub nixos_version: String,
}

impl Step for Verify {
    const KIND: &'static str = "verify";
    type Params = NodeParams;
    type Output = Verified;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Verified, StepError> {
        let i: NodesInput = ctx.input()?;
        let mut r = remote(&ctx, &i).await?;
        // A plan stored before reboot steps existed: reboot here if the
        // install left a system waiting for one.
        if !ctx.deps.contains_key(&step_name::<Reboot>(&p.node))
            && tasks::nixos::verify(&r).await.is_err()
        {
            reboot_into_nixos(&ctx, &i, &p, &r).await?;
            r = remote(&ctx, &i).await?;
        }
        let version = tasks::nixos::verify(&r).await.map_err(ssh_error)?;
        ctx.log.info(format!("NixOS {version}"));
        Ok(Verified {
            nixos_version: version,
        })
    }
}
