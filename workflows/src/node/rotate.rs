//! `secret.rotate`: a new version of a secret, on every node that uses it,
//! without a moment where the cluster has no valid version.
//!
//! ```text
//! stage → targets → deploy → restart → verify → retire
//! ```
//! - `stage`: a new version (random, or an app's `action.sh` output) is staged;
//!   the store's current version stays the valid one.
//! - `targets`: the nodes whose deployed configuration references
//!   `/root/secrets/<name>`, with the units that load it and the apps involved.
//! - `deploy`, `restart`, `verify`: all targets at once; verify runs each app's
//!   `action.sh health` (or `systemctl is-active` for units without an app).
//! - `retire`: the staged version becomes current, the old one is deleted.
//!
//! A failure anywhere leaves the old version current; `runs resume` continues.
//! Meant for `nix-infra schedule add … --workflow secret.rotate`.

use super::access::{secret_store, server_role};
use super::steps::LogSink;
use super::{CONNECTIONS, NodesInput, decode_input, single, ssh_error};
use crate::domain::Role;
use age::secrecy::SecretSlice;
use engine::{Plan, PlanError, Step, StepContext, StepError, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tasks::ssh::{Discard, Remote, shell_quote};

/// `args` of `secret.rotate`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotateArgs {
    /// The secret.
    pub secret: String,
    /// Random bytes of a generated value (hex-encoded); default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// Or: the new value is the stdout of the repo's `app_modules/<app>/action.sh
    /// <args>`, run on `node` as `cluster action` runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_action: Option<FromAction>,
}

/// Where a rotated value comes from when an app makes it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FromAction {
    /// The app.
    pub app: String,
    /// The node its action runs on.
    pub node: String,
    /// The action's arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// A node that uses the secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Target {
    node: String,
    ipv4: String,
    units: Vec<String>,
    apps: Vec<String>,
}

fn rotate_args(input: &Value) -> Result<(NodesInput, RotateArgs), String> {
    let mut input = input.clone();
    if input.get("nodes").is_none() {
        input["nodes"] = json!([]);
    }
    let i = decode_input(&input)?;
    let a: RotateArgs = serde_json::from_value(i.args.clone()).map_err(|e| format!("args: {e}"))?;
    if a.bytes.is_some() && a.from_action.is_some() {
        return Err("args: give `bytes` or `from_action`, not both".into());
    }
    Ok((i, a))
}

fn ctx_args(ctx: &StepContext) -> Result<(NodesInput, RotateArgs), StepError> {
    rotate_args(&ctx.input).map_err(StepError::permanent)
}

async fn connect(i: &NodesInput, node: &str, ip: &str) -> Result<Arc<Remote>, StepError> {
    CONNECTIONS
        .get(
            &super::ssh_config_for(&i.repo()?),
            node,
            ip,
            Duration::from_secs(120),
        )
        .await
        .map_err(ssh_error)
}

/// Runs `f` on every target at once; fails naming every node that failed.
async fn on_targets<F, Fut>(i: &NodesInput, targets: &[Target], f: F) -> Result<(), StepError>
where
    F: Fn(Arc<Remote>, Target) -> Fut,
    Fut: std::future::Future<Output = Result<(), StepError>>,
{
    let runs = targets.iter().map(|t| {
        let f = &f;
        async move {
            let r = connect(i, &t.node, &t.ipv4)
                .await
                .map_err(|e| (t.node.clone(), e))?;
            f(r, t.clone()).await.map_err(|e| (t.node.clone(), e))
        }
    });
    let failed: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .map(|(node, e)| format!("{node}: {}", e.message))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(StepError::retryable(failed.join("; ")))
    }
}

fn targets(ctx: &StepContext) -> Result<Vec<Target>, StepError> {
    Ok(ctx.output::<Targets>(Targets::KIND)?.targets)
}

/// The staged value this run deploys.
fn staged(ctx: &StepContext, i: &NodesInput, a: &RotateArgs) -> Result<SecretSlice<u8>, StepError> {
    let v = ctx.output::<Stage>(Stage::KIND)?.version;
    secret_store(i)?
        .get_version(&a.secret, v)
        .map_err(StepError::permanent)
}

/// Unit names set in a Nix file: `systemd.services.<unit>.…`.
fn units_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices("systemd.services.")
        .filter_map(|(at, m)| {
            let rest = &text[at + m.len()..];
            let unit: String = rest
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@'))
                .collect();
            (!unit.is_empty()).then_some(unit)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The description `nix-infra workflows` shows for [`rotate`].
const ROTATE_ABOUT: &str = "Rotate a secret: stage a new version, deploy it to the nodes that use \
    it, restart their units, verify, retire the old version. Input: \
    {\"cluster\",\"dir\",\"args\":{\"secret\",\
    \"bytes\"|\"from_action\":{\"app\",\"node\",\"args\"}}}";

/// The `secret.rotate` workflow.
pub fn rotate() -> Workflow {
    Workflow::new("secret.rotate", 1)
        .about(ROTATE_ABOUT)
        .resources(|input| {
            input["args"]["secret"]
                .as_str()
                .map(|s| vec![format!("secret/{s}")])
                .unwrap_or_default()
        })
        .planner(|input| {
            rotate_args(input).map_err(PlanError::Input)?;
            Ok(Plan::new(vec![
                single::<Stage>(),
                single::<Targets>().after(Stage::KIND),
                single::<Deploy>().after(Targets::KIND).after(Stage::KIND),
                single::<Restart>().after(Deploy::KIND).after(Targets::KIND),
                single::<Verify>().after(Restart::KIND).after(Targets::KIND),
                single::<Retire>().after(Verify::KIND).after(Stage::KIND),
            ]))
        })
        .with::<Stage>()
        .with::<Targets>()
        .with::<Deploy>()
        .with::<Restart>()
        .with::<Verify>()
        .with::<Retire>()
}

/// `stage`: a new version, staged; the current one stays valid.
struct Stage;

/// The version staged.
#[derive(Serialize, Deserialize)]
struct Staged {
    version: u32,
}

impl Step for Stage {
    const KIND: &'static str = "stage";
    type Params = ();
    type Output = Staged;

    async fn run(ctx: StepContext, _: ()) -> Result<Staged, StepError> {
        let (i, a) = ctx_args(&ctx)?;
        let value: Vec<u8> = match &a.from_action {
            None => {
                let bytes: Vec<u8> = (0..a.bytes.unwrap_or(32))
                    .map(|_| rand::random::<u8>())
                    .collect();
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes()
            }
            Some(f) => action_output(&i, f).await?,
        };
        if value.is_empty() {
            return Err(StepError::permanent("the new value is empty"));
        }
        let v = secret_store(&i)?
            .stage(&a.secret, &SecretSlice::from(value))
            .map_err(StepError::permanent)?;
        ctx.log.info(format!("staged {} version {v}", a.secret));
        Ok(Staged { version: v })
    }
}

/// The stdout of `f`'s action on its node, its last newline dropped.
async fn action_output(i: &NodesInput, f: &FromAction) -> Result<Vec<u8>, StepError> {
    let server = i
        .servers()
        .await?
        .into_iter()
        .find(|s| s.node() == Some(f.node.as_str()))
        .ok_or_else(|| {
            StepError::permanent(format!(
                "no server named {} in cluster {}",
                f.node, i.cluster
            ))
        })?;
    let ip = server
        .ipv4
        .ok_or_else(|| StepError::permanent(format!("{} has no address", f.node)))?;
    let script = super::action::local_script(&i.dir, &f.app)?;
    let r = connect(i, &f.node, &ip).await?;
    // Run as `cluster action` runs it: the repo's script, with bash.
    let out = super::action::run(&r, &script, &[], &f.args, &Discard)
        .await
        .map_err(ssh_error)?;
    Ok(out.stdout.trim_end_matches('\n').as_bytes().to_vec())
}

/// `targets`: the nodes whose configuration references the secret.
struct Targets;

/// The nodes that use the secret.
#[derive(Serialize, Deserialize)]
struct Targeted {
    targets: Vec<Target>,
}

impl Step for Targets {
    const KIND: &'static str = "targets";
    type Params = ();
    type Output = Targeted;

    async fn run(ctx: StepContext, _: ()) -> Result<Targeted, StepError> {
        let (i, a) = ctx_args(&ctx)?;
        let path = format!("/root/secrets/{}", a.secret);
        let mut found = Vec::new();
        for s in i.servers().await? {
            if server_role(&s) == Some(Role::Ctrl) {
                continue;
            }
            let (Some(node), Some(ip)) = (s.node().map(str::to_string), s.ipv4.clone()) else {
                continue;
            };
            let r = connect(&i, &node, &ip).await?;
            if let Some(t) = target(&r, &path, node, ip).await? {
                found.push(t);
            }
        }
        found.sort_by(|a, b| a.node.cmp(&b.node));
        let names: Vec<&str> = found.iter().map(|t| t.node.as_str()).collect();
        ctx.log.info(format!(
            "{} is used on: {}",
            a.secret,
            if names.is_empty() {
                "no node".to_string()
            } else {
                names.join(", ")
            }
        ));
        Ok(Targeted { targets: found })
    }
}

/// The node as a target, if its deployed files reference `path`.
async fn target(
    r: &Remote,
    path: &str,
    node: String,
    ip: String,
) -> Result<Option<Target>, StepError> {
    let files = r
        .run(
            &format!("grep -rlF {} /etc/nixos || true", shell_quote(path)),
            None,
            &Discard,
            None,
        )
        .await
        .map_err(ssh_error)?
        .stdout;
    let files: Vec<&str> = files.lines().filter(|l| !l.is_empty()).collect();
    if files.is_empty() {
        return Ok(None);
    }
    let mut units = Vec::new();
    let mut apps = Vec::new();
    for f in &files {
        let text = r
            .run(&format!("cat {}", shell_quote(f)), None, &Discard, None)
            .await
            .map_err(ssh_error)?
            .stdout;
        units.extend(units_in(&text));
        if let Some(app) = f
            .strip_prefix("/etc/nixos/app_modules/")
            .and_then(|p| p.split('/').next())
        {
            apps.push(app.to_string());
        }
    }
    units.sort();
    units.dedup();
    apps.sort();
    apps.dedup();
    Ok(Some(Target {
        node,
        ipv4: ip,
        units,
        apps,
    }))
}

/// `deploy`: the staged version onto every target.
struct Deploy;

/// How many targets got it.
#[derive(Serialize, Deserialize)]
struct DeployedTo {
    deployed: usize,
}

impl Step for Deploy {
    const KIND: &'static str = "deploy";
    type Params = ();
    type Output = DeployedTo;

    async fn run(ctx: StepContext, _: ()) -> Result<DeployedTo, StepError> {
        let (i, a) = ctx_args(&ctx)?;
        let value = staged(&ctx, &i, &a)?;
        let targets = targets(&ctx)?;
        on_targets(&i, &targets, |r, _| {
            let value = value.clone();
            let name = a.secret.clone();
            async move {
                tasks::deploy::deploy_secret(&r, &name, &value)
                    .await
                    .map_err(StepError::retryable)
            }
        })
        .await?;
        Ok(DeployedTo {
            deployed: targets.len(),
        })
    }
}

/// `restart`: the units that load the secret, on every target.
struct Restart;

/// The units restarted on a node.
#[derive(Serialize, Deserialize)]
struct NodeUnits {
    node: String,
    units: Vec<String>,
}

/// Every target's restarted units.
#[derive(Serialize, Deserialize)]
struct RestartedUnits {
    restarted: Vec<NodeUnits>,
}

impl Step for Restart {
    const KIND: &'static str = "restart";
    type Params = ();
    type Output = RestartedUnits;

    async fn run(ctx: StepContext, _: ()) -> Result<RestartedUnits, StepError> {
        let (i, _) = ctx_args(&ctx)?;
        let targets = targets(&ctx)?;
        let log = ctx.log.clone();
        on_targets(&i, &targets, |r, t| {
            let log = log.clone();
            async move {
                if t.units.is_empty() {
                    return Ok(());
                }
                let units: Vec<String> = t
                    .units
                    .iter()
                    .map(|u| shell_quote(&format!("{u}.service")))
                    .collect();
                r.run(
                    &format!("systemctl restart {}", units.join(" ")),
                    None,
                    &LogSink(log),
                    None,
                )
                .await
                .map_err(ssh_error)?;
                Ok(())
            }
        })
        .await?;
        let restarted = targets
            .into_iter()
            .map(|t| NodeUnits {
                node: t.node,
                units: t.units,
            })
            .collect();
        Ok(RestartedUnits { restarted })
    }
}

/// `verify`: each target's apps (`action.sh health`) and units are healthy.
struct Verify;

/// How many targets are healthy.
#[derive(Serialize, Deserialize)]
struct HealthyTargets {
    healthy: usize,
}

impl Step for Verify {
    const KIND: &'static str = "verify";
    type Params = ();
    type Output = HealthyTargets;

    async fn run(ctx: StepContext, _: ()) -> Result<HealthyTargets, StepError> {
        let (i, _) = ctx_args(&ctx)?;
        let targets = targets(&ctx)?;
        let log = ctx.log.clone();
        on_targets(&i, &targets, |r, t| {
            let log = log.clone();
            async move {
                let mut checks: Vec<String> = t
                    .apps
                    .iter()
                    .map(|app| {
                        let action =
                            shell_quote(&format!("/etc/nixos/app_modules/{app}/action.sh"));
                        format!("if [ -x {action} ]; then {action} health; fi")
                    })
                    .collect();
                checks.extend(t.units.iter().map(|u| {
                    format!(
                        "systemctl is-active --quiet {}",
                        shell_quote(&format!("{u}.service"))
                    )
                }));
                for check in checks {
                    r.run(&check, None, &LogSink(log.clone()), None)
                        .await
                        .map_err(|e| StepError::retryable(format!("health check failed: {e}")))?;
                }
                Ok(())
            }
        })
        .await?;
        Ok(HealthyTargets {
            healthy: targets.len(),
        })
    }
}

/// `retire`: the staged version becomes current; the old one is deleted.
struct Retire;

/// The version now current.
#[derive(Serialize, Deserialize)]
struct Current {
    current: u32,
}

impl Step for Retire {
    const KIND: &'static str = "retire";
    type Params = ();
    type Output = Current;

    async fn run(ctx: StepContext, _: ()) -> Result<Current, StepError> {
        let (i, a) = ctx_args(&ctx)?;
        let ours = ctx.output::<Stage>(Stage::KIND)?.version;
        let store = secret_store(&i)?;
        let info = store.info(&a.secret).map_err(StepError::permanent)?;
        if info.current == Some(ours) {
            return Ok(Current { current: ours });
        }
        if info.pending != Some(ours) {
            return Err(StepError::permanent(format!(
                "version {ours} of {} is no longer staged (another rotation replaced it)",
                a.secret
            )));
        }
        let v = store.confirm(&a.secret).map_err(StepError::permanent)?;
        ctx.log.info(format!(
            "{} version {v} is current; the old one is retired",
            a.secret
        ));
        Ok(Current { current: v })
    }
}
