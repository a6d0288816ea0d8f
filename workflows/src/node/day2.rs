//! Day-2 operations, one durable run with a result per node: `node.cmd`,
//! `node.action`, `node.upload`, `nix.gc`, `nixos.rollback`, and the rolling
//! `nixos.upgrade` (batches; the first failed batch stops the rest).
//!
//! A remote command's exit code is its step's result: non-zero fails the step
//! (for good: a command is not retried), an unreachable node is retried.

use super::steps::{LogSink, secret_store};
use super::{
    NodesInput, lifecycle_retry, node_param, node_resources, node_step, parse_input, remote,
};
use engine::{Plan, RetryPolicy, StepContext, StepError, StepSpec, Workflow};
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use tasks::ssh::{LineSink, SshError, Stream, shell_quote};

/// `args` of `node.cmd`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CmdArgs {
    /// The shell command.
    command: String,
    /// A secret holding `KEY=value` lines to export first (never in argv or logs).
    #[serde(default)]
    env_secret: Option<String>,
}

/// `args` of `node.action`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionArgs {
    app: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    save_as_secret: Option<String>,
}

/// `args` of `node.upload`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadArgs {
    src: std::path::PathBuf,
    dst: String,
}

/// `args` of `image.publish`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishArgs {
    /// A local image archive (`podman save` / `docker save`).
    file: std::path::PathBuf,
}

/// `args` of `nixos.upgrade`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeArgs {
    #[serde(default = "one")]
    batch: usize,
}

fn one() -> usize {
    1
}

/// Replaces every secret value in what it passes on.
struct Redacting<'a> {
    inner: &'a dyn LineSink,
    values: &'a [String],
}

fn redact(text: &str, values: &[String]) -> String {
    values
        .iter()
        .filter(|v| !v.is_empty())
        .fold(text.to_string(), |t, v| t.replace(v.as_str(), "[redacted]"))
}

impl LineSink for Redacting<'_> {
    fn line(&self, stream: Stream, line: &str) {
        self.inner.line(stream, &redact(line, self.values));
    }
}

/// A failed remote command as a step error: its exit ends the step, the rest may be retried.
fn command_error(e: SshError, values: &[String]) -> StepError {
    match e {
        SshError::Exit {
            code, stderr_tail, ..
        } => {
            let tail = redact(stderr_tail.trim(), values);
            if tail.is_empty() {
                StepError::permanent(format!("exit {code}"))
            } else {
                StepError::permanent(format!("exit {code}: {tail}"))
            }
        }
        other => super::ssh_error(other),
    }
}

fn per_node(i: &NodesInput, kind: &str, retry: RetryPolicy) -> Vec<StepSpec> {
    let mut steps = vec![StepSpec::new("locate", "locate").retry(lifecycle_retry())];
    for n in &i.nodes {
        steps.push(
            node_step(kind, &n.name)
                .after("locate")
                .retry(retry.clone()),
        );
    }
    steps
}

fn simple<F, Fut>(name: &str, about: &str, kind: &'static str, f: F) -> Workflow
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
{
    Workflow::new(name, 1)
        .about(about)
        .resources(node_resources)
        .planner(move |input| {
            let i = parse_input(input)?;
            Ok(Plan::new(per_node(&i, kind, lifecycle_retry())))
        })
        .step("locate", super::steps::locate)
        .step(kind, f)
}

/// Runs `command` on the step's node, streaming its lines to the step log.
async fn run_logged(ctx: &StepContext, command: &str) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let r = remote(ctx, &i).await?;
    r.run(command, None, &LogSink(ctx.log.clone()), None)
        .await
        .map_err(|e| command_error(e, &[]))?;
    Ok(json!({ "exit": 0 }))
}

/// `node.cmd`: a shell command on every node.
pub fn cmd() -> Workflow {
    simple(
        "node.cmd",
        "Run a shell command on each node; the step fails with its exit code. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"command\",\"env_secret\"}}",
        "cmd",
        |ctx| async move {
            let i: NodesInput = ctx.input()?;
            let a: CmdArgs = i.args()?;
            let mut script = String::new();
            let mut values = Vec::new();
            if let Some(name) = &a.env_secret {
                use age::secrecy::ExposeSecret;
                let env = secret_store(&i)?.get(name).map_err(StepError::permanent)?;
                let text = String::from_utf8_lossy(env.expose_secret()).to_string();
                for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
                    script.push_str(&format!("export {k}={}\n", shell_quote(v)));
                    values.push(v.to_string());
                }
            }
            script.push_str(&a.command);
            script.push('\n');
            let r = remote(&ctx, &i).await?;
            let sink = LogSink(ctx.log.clone());
            // The script, values included, goes on stdin: argv is `sh -s`.
            r.run(
                "sh -s",
                Some(script.as_bytes()),
                &Redacting {
                    inner: &sink,
                    values: &values,
                },
                None,
            )
            .await
            .map_err(|e| command_error(e, &values))?;
            Ok(json!({ "exit": 0 }))
        },
    )
}

/// The command line of `app`'s `action.sh` on a node, arguments quoted.
pub(crate) fn action_command(app: &str, args: &[String]) -> String {
    let mut command = shell_quote(&format!("/etc/nixos/app_modules/{app}/action.sh"));
    for arg in args {
        command.push(' ');
        command.push_str(&shell_quote(arg));
    }
    command
}

/// `node.action`: an app's `action.sh` on each node.
pub fn action() -> Workflow {
    simple(
        "node.action",
        "Run app_modules/<app>/action.sh on each node; with save_as_secret its stdout is stored as a secret, never shown. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"args\",\"save_as_secret\"}}",
        "action",
        |ctx| async move {
            let i: NodesInput = ctx.input()?;
            let a: ActionArgs = i.args()?;
            let command = action_command(&a.app, &a.args);
            let r = remote(&ctx, &i).await?;
            match &a.save_as_secret {
                Some(name) => {
                    let store = secret_store(&i)?;
                    let v = tasks::deploy::save_output_as_secret(&r, &command, &store, name)
                        .await
                        .map_err(|e| match e {
                            tasks::deploy::DeployError::Ssh(s) => command_error(s, &[]),
                            other => StepError::permanent(other),
                        })?;
                    ctx.log
                        .info(format!("stored the output as secret {name} (version {v})"));
                    Ok(json!({ "exit": 0, "saved_as": name, "version": v }))
                }
                None => {
                    r.run(&command, None, &LogSink(ctx.log.clone()), None)
                        .await
                        .map_err(|e| command_error(e, &[]))?;
                    Ok(json!({ "exit": 0 }))
                }
            }
        },
    )
}

/// `node.upload`: a local file or folder onto each node.
pub fn upload() -> Workflow {
    simple(
        "node.upload",
        "Copy a local file or folder to a path on each node. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"src\",\"dst\"}}",
        "upload",
        |ctx| async move {
            use std::os::unix::fs::PermissionsExt;
            let i: NodesInput = ctx.input()?;
            let a: UploadArgs = i.args()?;
            let r = remote(&ctx, &i).await?;
            let meta = std::fs::metadata(&a.src)
                .map_err(|e| StepError::permanent(format!("{}: {e}", a.src.display())))?;
            if meta.is_dir() {
                r.upload_tree(&a.src, &a.dst)
                    .await
                    .map_err(super::ssh_error)?;
            } else {
                let data = std::fs::read(&a.src)
                    .map_err(|e| StepError::permanent(format!("{}: {e}", a.src.display())))?;
                r.upload(&data, &a.dst, meta.permissions().mode() & 0o777)
                    .await
                    .map_err(super::ssh_error)?;
            }
            ctx.log.info(format!("{} → {}", a.src.display(), a.dst));
            Ok(json!({ "uploaded": a.dst }))
        },
    )
}

/// `image.publish`: an image archive loaded into each node's podman.
pub fn publish_image() -> Workflow {
    simple(
        "image.publish",
        "Load a local image archive (podman/docker save) into podman on each node. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"file\"}}",
        "publish",
        |ctx| async move {
            let i: NodesInput = ctx.input()?;
            let a: PublishArgs = i.args()?;
            let data = std::fs::read(&a.file)
                .map_err(|e| StepError::permanent(format!("{}: {e}", a.file.display())))?;
            let r = remote(&ctx, &i).await?;
            let path = format!(
                "/var/lib/nix-infra/images/{}.tar",
                ctx.run_id
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            );
            r.upload(&data, &path, 0o600)
                .await
                .map_err(super::ssh_error)?;
            let q = shell_quote(&path);
            let out = r
                .run(
                    &format!("podman load -q -i {q}; status=$?; rm -f {q}; exit $status"),
                    None,
                    &LogSink(ctx.log.clone()),
                    None,
                )
                .await
                .map_err(|e| command_error(e, &[]))?;
            let images: Vec<String> = out
                .stdout
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("Loaded image:")
                        .or_else(|| l.strip_prefix("Loaded image(s):"))
                })
                .flat_map(|l| l.split(','))
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            Ok(json!({ "loaded": images }))
        },
    )
}

/// `nix.gc`: `nix-collect-garbage -d` on each node.
pub fn gc() -> Workflow {
    simple(
        "nix.gc",
        "Collect garbage in each node's Nix store (nix-collect-garbage -d). Input: {\"cluster\",\"dir\",\"nodes\"}",
        "gc",
        |ctx| async move { run_logged(&ctx, "nix-collect-garbage -d").await },
    )
}

/// `nixos.rollback`: back to each node's previous generation.
pub fn rollback() -> Workflow {
    simple(
        "nixos.rollback",
        "Switch each node back to its previous NixOS generation. Input: {\"cluster\",\"dir\",\"nodes\"}",
        "rollback",
        |ctx| async move { run_logged(&ctx, "nixos-rebuild switch --rollback").await },
    )
}

/// `nixos.upgrade`: rolling, `args.batch` nodes at a time; a failed batch stops the rest.
pub fn upgrade() -> Workflow {
    Workflow::new("nixos.upgrade", 1)
        .about("Upgrade NixOS on the nodes in batches (nixos-rebuild switch --upgrade); the first failed batch leaves the later ones untouched. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"batch\"}}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let a: UpgradeArgs = serde_json::from_value(if i.args.is_null() { json!({}) } else { i.args.clone() })
                .map_err(|e| engine::PlanError::Input(format!("args: {e}")))?;
            if a.batch == 0 {
                return Err(engine::PlanError::Input("batch must be at least 1".into()));
            }
            let mut steps = vec![StepSpec::new("locate", "locate").retry(lifecycle_retry())];
            let mut previous: Vec<String> = Vec::new();
            for batch in i.nodes.chunks(a.batch) {
                let mut this = Vec::new();
                for n in batch {
                    let mut up = node_step("upgrade", &n.name)
                        .after("locate")
                        .retry(RetryPolicy::none());
                    for prev in &previous {
                        up = up.after(prev.clone());
                    }
                    this.push(format!("upgrade/{}", n.name));
                    steps.push(up);
                }
                previous = this;
            }
            Ok(Plan::new(steps))
        })
        .step("locate", super::steps::locate)
        .step("upgrade", |ctx| async move {
            let node = node_param(&ctx)?;
            let out = run_logged(&ctx, "nixos-rebuild switch --upgrade").await?;
            ctx.log.info(format!("{node} upgraded"));
            Ok::<_, StepError>(out)
        })
}
