//! `node.action`: an app's `action.sh`, run as the Dart nix-infra runs it.
//!
//! The cluster repo's own `app_modules/<app>/action.sh` (not the node's
//! copy) is uploaded to the node as `/root/action.sh` (mode 0600: it need
//! not be executable), run with `bash` and its arguments, then removed,
//! whatever its exit. The `--env-vars` values are exported for it. They
//! travel with the command on SSH stdin (`sh -s`), so neither argv nor the
//! node's process list carries them, and the step log shows them
//! `[redacted]`. A `[%%key%%]` in a value is filled with the node's own
//! variables (those its configuration is rendered with); an unknown one
//! fails the step naming it (and is refused before a run exists when the
//! request can tell).

use super::access::{ctrl_endpoints, ctrl_servers, open_registry, secret_store};
use super::day2::{Exit, Redacting, simple, user_command_error};
use super::stage::{Peers, node_vars};
use super::steps::LogSink;
use super::{NodeInput, NodeParams, NodesInput, address, remote, ssh_error};
use engine::{Step, StepContext, StepError, Workflow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tasks::ssh::{LineSink, Remote, RemoteOutput, SshError, shell_quote};

/// Where an action's script is put on the node (as the Dart tool puts it).
pub const NODE_SCRIPT: &str = "/root/action.sh";

/// `args` of `node.action`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionArgs {
    /// The app whose `action.sh` runs.
    pub app: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Store the action's stdout as this secret instead of showing it.
    #[serde(default)]
    pub save_as_secret: Option<String>,
    /// A secret holding `KEY=value` lines to export for it (never in argv or logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_secret: Option<String>,
}

/// The repo's `app_modules/<app>/action.sh`, relative to the cluster directory.
pub fn script_path(app: &str) -> PathBuf {
    Path::new("app_modules").join(app).join("action.sh")
}

/// The bytes of the repo's `action.sh` of `app`; a missing one fails naming its path.
pub(crate) fn local_script(dir: &Path, app: &str) -> Result<Vec<u8>, StepError> {
    let path = dir.join(script_path(app));
    std::fs::read(&path).map_err(|e| {
        StepError::permanent(format!(
            "the action of app {app}: cannot read {}: {e}",
            path.display()
        ))
    })
}

/// Whether `key` can be exported as a shell variable.
pub(crate) fn is_var_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What `sh -s` reads on the node: the exports, `bash` on the uploaded
/// script (its stdin the null device, so it cannot read the rest of this),
/// the script removed, and the script's exit status.
pub(crate) fn script(env: &[(String, String)], args: &[String]) -> String {
    let mut s = String::new();
    for (k, v) in env {
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    s.push_str("bash ");
    s.push_str(&shell_quote(NODE_SCRIPT));
    for a in args {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s.push_str(" </dev/null\nstatus=$?\nrm -f ");
    s.push_str(&shell_quote(NODE_SCRIPT));
    s.push_str("\nexit $status\n");
    s
}

/// Uploads `script_bytes` as [`NODE_SCRIPT`] and runs it with `env` and `args`.
pub(crate) async fn run(
    r: &Remote,
    script_bytes: &[u8],
    env: &[(String, String)],
    args: &[String],
    sink: &dyn LineSink,
) -> Result<RemoteOutput, SshError> {
    r.upload(script_bytes, NODE_SCRIPT, 0o600).await?;
    r.run("sh -s", Some(script(env, args).as_bytes()), sink, None)
        .await
}

/// The `[%%key%%]` keys of `text`.
pub(crate) fn placeholders(text: &str) -> BTreeSet<String> {
    match tasks::render(text, &BTreeMap::new()) {
        Ok(_) => BTreeSet::new(),
        Err(tasks::MissingKeys(keys)) => keys,
    }
}

/// The names of node `n`'s variables: the keys its configuration is
/// rendered with (values stand in; nothing is asked of the cluster).
pub(crate) fn var_names(i: &NodesInput, n: &NodeInput) -> BTreeSet<String> {
    let peers = match n.role {
        r if r.is_ctrl() => Peers::Ctrl(Vec::new()),
        r if r.is_fleet() => Peers::Fleet,
        _ => Peers::Overlay {
            overlay_ip: String::new(),
            endpoints: Vec::new(),
        },
    };
    let mut names: BTreeSet<String> = node_vars(i, n, "192.0.2.1", peers).into_keys().collect();
    if super::dart::is_dart_layout(&i.dir) {
        names.extend(
            [
                "localhost.hostname",
                "localhost.ipv4",
                "nix-store.trusted-public-keys",
            ]
            .map(String::from),
        );
        if !n.is_ctrl() && !n.is_fleet() {
            names.insert("localhost.overlayIp".into());
        }
    }
    names
}

/// Whether an action may name `key` for node `n`: one of [`var_names`],
/// or, in the Dart layout, another server's address (looked up by the run).
pub(crate) fn may_name(i: &NodesInput, names: &BTreeSet<String>, key: &str) -> bool {
    names.contains(key)
        || (super::dart::is_dart_layout(&i.dir) && super::dart_config::names_a_server(key))
}

/// Node `n`'s variables now: its address, its peers and, on the overlay,
/// its overlay address (left out while flannel has not leased it one).
async fn vars_now(
    ctx: &StepContext,
    i: &NodesInput,
    n: &NodeInput,
) -> Result<BTreeMap<String, String>, StepError> {
    let public = address(ctx)?;
    let dart = super::dart::is_dart_layout(&i.dir);
    if n.is_ctrl() || n.is_fleet() {
        let peers = if n.is_ctrl() {
            Peers::Ctrl(ctrl_servers(i).await?)
        } else {
            Peers::Fleet
        };
        let mut vars = node_vars(i, n, &public, peers);
        if dart {
            vars.extend(super::dart_config::action_values(i, n, &public).await?);
        }
        return Ok(vars);
    }
    let overlay = open_registry(i)
        .await?
        .overlay_ip(&public)
        .await
        .map_err(StepError::retryable)?;
    let peers = Peers::Overlay {
        overlay_ip: overlay.clone().unwrap_or_default(),
        endpoints: ctrl_endpoints(i).await?,
    };
    let mut vars = node_vars(i, n, &public, peers);
    if overlay.is_none() {
        vars.remove("overlayIp");
    }
    if super::dart::is_dart_layout(&i.dir) {
        vars.extend(super::dart_config::action_values(i, n, &public).await?);
    }
    Ok(vars)
}

/// The variables of the run's env secret, placeholders filled for node `n`.
async fn env_of(
    ctx: &StepContext,
    i: &NodesInput,
    n: &NodeInput,
    name: &str,
) -> Result<Vec<(String, String)>, StepError> {
    use age::secrecy::ExposeSecret;
    let secret = secret_store(i)?.get(name).map_err(StepError::permanent)?;
    let text = String::from_utf8_lossy(secret.expose_secret()).to_string();
    let entries: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    if let Some((k, _)) = entries.iter().find(|(k, _)| !is_var_name(k)) {
        return Err(StepError::permanent(format!(
            "--env-vars: `{k}` is not a variable name"
        )));
    }
    // The cluster is asked for the node's values only when a value needs them.
    let vars = if entries.iter().any(|(_, v)| !placeholders(v).is_empty()) {
        vars_now(ctx, i, n).await?
    } else {
        BTreeMap::new()
    };
    let mut env = Vec::new();
    for (k, v) in entries {
        let value = if placeholders(v).is_empty() {
            v.to_string()
        } else {
            tasks::render(v, &vars).map_err(|e| {
                let keys: Vec<String> = e.0.iter().map(|k| format!("[%%{k}%%]")).collect();
                let why = if e.0.contains("overlayIp") && !n.is_ctrl() && !n.is_fleet() {
                    " (flannel has leased it no overlay subnet yet)"
                } else {
                    ""
                };
                StepError::permanent(format!(
                    "--env-vars {k}: unknown placeholder {} on {}{why}",
                    keys.join(", "),
                    n.name
                ))
            })?
        };
        env.push((k.to_string(), value));
    }
    Ok(env)
}

/// `action/<node>`: an app's `action.sh`; with `save_as_secret`, its stdout becomes a secret.
pub struct Action;

impl Step for Action {
    const KIND: &'static str = "action";
    type Params = NodeParams;
    type Output = Exit;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Exit, StepError> {
        let i: NodesInput = ctx.input()?;
        let a: ActionArgs = i.args()?;
        let n = i.node(p.node.as_str())?.clone();
        let bytes = local_script(&i.dir, &a.app)?;
        let env = match &a.env_secret {
            Some(name) => env_of(&ctx, &i, &n, name).await?,
            None => Vec::new(),
        };
        let values: Vec<String> = env.iter().map(|(_, v)| v.clone()).collect();
        let r = remote(&ctx, &i).await?;
        let Some(name) = &a.save_as_secret else {
            let sink = LogSink(ctx.log.clone());
            let sink = Redacting {
                inner: &sink,
                values: &values,
            };
            run(&r, &bytes, &env, &a.args, &sink)
                .await
                .map_err(|e| user_command_error(e, &values))?;
            return Ok(Exit::OK);
        };
        r.upload(&bytes, NODE_SCRIPT, 0o600)
            .await
            .map_err(ssh_error)?;
        let store = secret_store(&i)?;
        let stdin = script(&env, &a.args);
        let v =
            tasks::deploy::save_output_as_secret(&r, "sh -s", Some(stdin.as_bytes()), &store, name)
                .await
                .map_err(|e| match e {
                    tasks::deploy::DeployError::Ssh(s) => user_command_error(s, &values),
                    other => StepError::permanent(other),
                })?;
        ctx.log
            .info(format!("stored the output as secret {name} (version {v})"));
        Ok(Exit {
            saved_as: Some(name.clone()),
            version: Some(v),
            ..Exit::OK
        })
    }
}

/// `node.action`: an app's `action.sh` on each node.
pub fn action() -> Workflow {
    simple::<Action>(
        "node.action",
        "Upload the repo's app_modules/<app>/action.sh to each node, run it with bash and its \
         arguments (env_secret's variables exported, [%%key%%] filled with the node's values), \
         remove it; with save_as_secret its stdout is stored as a secret, never shown. Input: \
         {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"args\",\"save_as_secret\",\"env_secret\"}}",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_exports_quoted_runs_bash_and_removes_it_whatever_the_exit() {
        let s = script(
            &[("PW".into(), "it's $x".into())],
            &["create-db".into(), "--name=a b".into()],
        );
        assert_eq!(
            s,
            "export PW='it'\\''s $x'\n\
             bash '/root/action.sh' 'create-db' '--name=a b' </dev/null\n\
             status=$?\nrm -f '/root/action.sh'\nexit $status\n"
        );
        assert_eq!(
            placeholders("a [%%localIp%%] b [%%x.y%%]"),
            BTreeSet::from(["localIp".to_string(), "x.y".to_string()])
        );
        assert!(placeholders("no [%%end").is_empty());
    }
}
