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

use super::steps::{LogSink, secret_store};
use super::{CONNECTIONS, NodesInput, lifecycle_retry, ssh_config, ssh_error};
use age::secrecy::SecretSlice;
use engine::{Plan, PlanError, StepContext, StepError, StepSpec, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tasks::provider::LABEL_ROLE;
use tasks::ssh::{Discard, Remote, shell_quote};

/// `args` of `secret.rotate`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateArgs {
    /// The secret.
    secret: String,
    /// Random bytes of a generated value (hex-encoded); default 32.
    #[serde(default)]
    bytes: Option<usize>,
    /// Or: the new value is the stdout of `action.sh <args>` of `app` on `node`.
    #[serde(default)]
    from_action: Option<FromAction>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FromAction {
    app: String,
    node: String,
    #[serde(default)]
    args: Vec<String>,
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
    let i: NodesInput = serde_json::from_value(input).map_err(|e| e.to_string())?;
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
        .get(&ssh_config(&i.dir), node, ip, Duration::from_secs(120))
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
    let t: Value = ctx.dep("targets")?;
    Ok(serde_json::from_value(t["targets"].clone())?)
}

/// The staged value this run deploys.
fn staged(ctx: &StepContext, i: &NodesInput, a: &RotateArgs) -> Result<SecretSlice<u8>, StepError> {
    let stage: Value = ctx.dep("stage")?;
    let v = stage["version"]
        .as_u64()
        .ok_or_else(|| StepError::permanent("stage recorded no version"))? as u32;
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

/// The `secret.rotate` workflow.
pub fn rotate() -> Workflow {
    Workflow::new("secret.rotate", 1)
        .about("Rotate a secret: stage a new version, deploy it to the nodes that use it, restart their units, verify, retire the old version. Input: {\"cluster\",\"dir\",\"args\":{\"secret\",\"bytes\"|\"from_action\":{\"app\",\"node\",\"args\"}}}")
        .resources(|input| {
            input["args"]["secret"]
                .as_str()
                .map(|s| vec![format!("secret/{s}")])
                .unwrap_or_default()
        })
        .planner(|input| {
            rotate_args(input).map_err(PlanError::Input)?;
            let r = lifecycle_retry();
            Ok(Plan::new(vec![
                StepSpec::new("stage", "stage").retry(r.clone()),
                StepSpec::new("targets", "targets").after("stage").retry(r.clone()),
                StepSpec::new("deploy", "deploy").after("targets").after("stage").retry(r.clone()),
                StepSpec::new("restart", "restart").after("deploy").after("targets").retry(r.clone()),
                StepSpec::new("verify", "verify").after("restart").after("targets").retry(r.clone()),
                StepSpec::new("retire", "retire").after("verify").after("stage").retry(r),
            ]))
        })
        .step("stage", |ctx| async move {
            let (i, a) = ctx_args(&ctx)?;
            let value: Vec<u8> = match &a.from_action {
                None => {
                    let bytes: Vec<u8> = (0..a.bytes.unwrap_or(32)).map(|_| rand::random::<u8>()).collect();
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
                }
                Some(f) => {
                    let server = i.servers().await?.into_iter().find(|s| s.node() == Some(f.node.as_str()))
                        .ok_or_else(|| StepError::permanent(format!("no server named {} in cluster {}", f.node, i.cluster)))?;
                    let ip = server.ipv4.ok_or_else(|| StepError::permanent(format!("{} has no address", f.node)))?;
                    let r = connect(&i, &f.node, &ip).await?;
                    let command = super::day2::action_command(&f.app, &f.args);
                    let out = r.run(&command, None, &Discard, None).await.map_err(ssh_error)?;
                    out.stdout.trim_end_matches('\n').as_bytes().to_vec()
                }
            };
            if value.is_empty() {
                return Err(StepError::permanent("the new value is empty"));
            }
            let v = secret_store(&i)?.stage(&a.secret, &SecretSlice::from(value)).map_err(StepError::permanent)?;
            ctx.log.info(format!("staged {} version {v}", a.secret));
            Ok(json!({ "version": v }))
        })
        .step("targets", |ctx| async move {
            let (i, a) = ctx_args(&ctx)?;
            let path = format!("/root/secrets/{}", a.secret);
            let mut found = Vec::new();
            for s in i.servers().await? {
                let (Some(node), Some(ip)) = (s.node().map(str::to_string), s.ipv4.clone()) else { continue };
                if s.labels.get(LABEL_ROLE).map(String::as_str) == Some("ctrl") {
                    continue;
                }
                let r = connect(&i, &node, &ip).await?;
                let files = r
                    .run(&format!("grep -rlF {} /etc/nixos || true", shell_quote(&path)), None, &Discard, None)
                    .await
                    .map_err(ssh_error)?
                    .stdout;
                let files: Vec<&str> = files.lines().filter(|l| !l.is_empty()).collect();
                if files.is_empty() {
                    continue;
                }
                let mut units = Vec::new();
                let mut apps = Vec::new();
                for f in &files {
                    let text = r.run(&format!("cat {}", shell_quote(f)), None, &Discard, None).await.map_err(ssh_error)?.stdout;
                    units.extend(units_in(&text));
                    if let Some(app) = f.strip_prefix("/etc/nixos/app_modules/").and_then(|p| p.split('/').next()) {
                        apps.push(app.to_string());
                    }
                }
                units.sort();
                units.dedup();
                apps.sort();
                apps.dedup();
                found.push(Target { node, ipv4: ip, units, apps });
            }
            found.sort_by(|a, b| a.node.cmp(&b.node));
            let names: Vec<&str> = found.iter().map(|t| t.node.as_str()).collect();
            ctx.log.info(format!("{} is used on: {}", a.secret, if names.is_empty() { "no node".to_string() } else { names.join(", ") }));
            Ok(json!({ "targets": found }))
        })
        .step("deploy", |ctx| async move {
            let (i, a) = ctx_args(&ctx)?;
            let value = staged(&ctx, &i, &a)?;
            let targets = targets(&ctx)?;
            on_targets(&i, &targets, |r, _| {
                let value = value.clone();
                let name = a.secret.clone();
                async move { tasks::deploy::deploy_secret(&r, &name, &value).await.map_err(StepError::retryable) }
            })
            .await?;
            Ok(json!({ "deployed": targets.len() }))
        })
        .step("restart", |ctx| async move {
            let (i, _) = ctx_args(&ctx)?;
            let targets = targets(&ctx)?;
            let log = ctx.log.clone();
            on_targets(&i, &targets, |r, t| {
                let log = log.clone();
                async move {
                    if t.units.is_empty() {
                        return Ok(());
                    }
                    let units: Vec<String> = t.units.iter().map(|u| shell_quote(&format!("{u}.service"))).collect();
                    r.run(&format!("systemctl restart {}", units.join(" ")), None, &LogSink(log), None).await.map_err(ssh_error)?;
                    Ok(())
                }
            })
            .await?;
            Ok(json!({ "restarted": targets.iter().map(|t| json!({"node": t.node, "units": t.units})).collect::<Vec<_>>() }))
        })
        .step("verify", |ctx| async move {
            let (i, _) = ctx_args(&ctx)?;
            let targets = targets(&ctx)?;
            let log = ctx.log.clone();
            on_targets(&i, &targets, |r, t| {
                let log = log.clone();
                async move {
                    let mut checks: Vec<String> = t.apps.iter().map(|app| {
                        let action = shell_quote(&format!("/etc/nixos/app_modules/{app}/action.sh"));
                        format!("if [ -x {action} ]; then {action} health; fi")
                    }).collect();
                    checks.extend(t.units.iter().map(|u| format!("systemctl is-active --quiet {}", shell_quote(&format!("{u}.service")))));
                    for check in checks {
                        r.run(&check, None, &LogSink(log.clone()), None).await.map_err(|e| StepError::retryable(format!("health check failed: {e}")))?;
                    }
                    Ok(())
                }
            })
            .await?;
            Ok(json!({ "healthy": targets.len() }))
        })
        .step("retire", |ctx| async move {
            let (i, a) = ctx_args(&ctx)?;
            let stage: Value = ctx.dep("stage")?;
            let ours = stage["version"].as_u64().unwrap_or_default() as u32;
            let store = secret_store(&i)?;
            let info = store.info(&a.secret).map_err(StepError::permanent)?;
            if info.current == Some(ours) {
                return Ok(json!({ "current": ours }));
            }
            if info.pending != Some(ours) {
                return Err(StepError::permanent(format!("version {ours} of {} is no longer staged (another rotation replaced it)", a.secret)));
            }
            let v = store.confirm(&a.secret).map_err(StepError::permanent)?;
            ctx.log.info(format!("{} version {v} is current; the old one is retired", a.secret));
            Ok(json!({ "current": v }))
        })
}
