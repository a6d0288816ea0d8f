//! Day-2 operations, one durable run with a result per node: `node.cmd`,
//! `node.action` (in `action.rs`), `node.upload`, `nix.gc`, `nixos.rollback`, and the rolling
//! `nixos.upgrade` (batches; the first failed batch stops the rest).
//!
//! A remote command's exit code is its step's result: non-zero fails the step
//! (for good: a command is not retried), an unreachable node is retried.

use super::access::secret_store;
use super::kinds::Locate;
use super::steps::LogSink;
use super::{NodeParams, NodesInput, node_resources, node_step, parse_input, remote, single};
use engine::{Plan, RetryPolicy, Step, StepContext, StepError, StepSpec, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tasks::ssh::{LineSink, SshError, Stream, shell_quote};

/// `args` of `node.cmd`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CmdArgs {
    /// The shell command.
    pub command: String,
    /// A secret holding `KEY=value` lines to export first (never in argv or logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_secret: Option<String>,
}

/// `args` of `node.upload`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadArgs {
    /// The local file or folder.
    pub src: std::path::PathBuf,
    /// Where on the node.
    pub dst: String,
    /// More files or folders, each to its own place (`upload --file "a b"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<Copy>,
}

/// One more thing `upload` copies.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    /// The local file or folder.
    pub src: std::path::PathBuf,
    /// Where on the node.
    pub dst: String,
}

/// `args` of `image.publish`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// A local image archive (`podman save` / `docker save`).
    pub file: std::path::PathBuf,
}

/// `args` of `nixos.upgrade`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeArgs {
    /// Nodes per batch.
    #[serde(default = "one")]
    pub batch: usize,
    /// The channel to switch to first on a node whose release is another
    /// (`nixos-25.05`: the Dart tool's `--nixos-version 25.05`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

fn one() -> usize {
    1
}

/// Replaces every secret value in what it passes on.
pub(super) struct Redacting<'a> {
    /// Where the lines go.
    pub(super) inner: &'a dyn LineSink,
    /// The values to hide.
    pub(super) values: &'a [String],
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
/// What an error says of a command whose connection was lost while it ran:
/// it may have run. A step failing so is not retried, and `runs resume`
/// asks before running it again ([`crate::request::uncertain_steps`]).
pub const MAY_HAVE_RUN: &str = "it may have run";

/// A command's error: a non-zero exit is permanent, the tail of stderr
/// (redacted) saying why; trouble reaching the node is retried.
pub(super) fn command_error(e: SshError, values: &[String]) -> StepError {
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

/// [`command_error`] for a user's command (`cmd`, `action`), which is not
/// safe to repeat: a connection lost while it ran means it may have run,
/// so the step fails for good, saying so.
pub(super) fn user_command_error(e: SshError, values: &[String]) -> StepError {
    match e {
        // The command was sent; the connection went before its exit status
        // came back. Running it again is the user's call, not a retry's.
        SshError::Io { node, reason }
        | SshError::Exit {
            code: -1,
            node,
            stderr_tail: reason,
            ..
        } => StepError::permanent(format!(
            "the connection to node {node} was lost while the command ran ({}): {MAY_HAVE_RUN}; \
             `runs resume` asks before running it again",
            redact(reason.trim(), values)
        )),
        other => command_error(other, values),
    }
}

/// `locate`, then one step of kind `S` per node.
fn per_node<S: Step<Params = NodeParams>>(i: &NodesInput) -> Vec<StepSpec> {
    let mut steps = vec![single::<Locate>()];
    for n in &i.nodes {
        steps.push(node_step::<S>(&n.name).after(Locate::KIND));
    }
    steps
}

/// A day-2 workflow: `locate`, then a step of kind `S` on every node.
pub(super) fn simple<S: Step<Params = NodeParams>>(name: &str, about: &str) -> Workflow {
    Workflow::new(name, 1)
        .about(about)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            Ok(Plan::new(per_node::<S>(&i)))
        })
        .with::<Locate>()
        .with::<S>()
}

/// A remote command's result: it exited 0 (any other exit fails the step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, 0.
    pub exit: i32,
    /// The secret the command's output was stored as (`node.action --save-as-secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_as: Option<String>,
    /// That secret's new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

impl Exit {
    pub(super) const OK: Exit = Exit {
        exit: 0,
        saved_as: None,
        version: None,
    };
}

/// Runs `command` on the step's node, streaming its lines to the step log.
async fn run_logged(ctx: &StepContext, command: &str) -> Result<Exit, StepError> {
    let i: NodesInput = ctx.input()?;
    let r = remote(ctx, &i).await?;
    r.run(command, None, &LogSink(ctx.log.clone()), None)
        .await
        .map_err(|e| command_error(e, &[]))?;
    Ok(Exit::OK)
}

/// `cmd/<node>`: a shell command, sent on stdin.
pub struct Cmd;

impl Step for Cmd {
    const KIND: &'static str = "cmd";
    type Params = NodeParams;
    type Output = Exit;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Exit, StepError> {
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
        .map_err(|e| user_command_error(e, &values))?;
        Ok(Exit::OK)
    }
}

/// `node.cmd`: a shell command on every node.
pub fn cmd() -> Workflow {
    simple::<Cmd>(
        "node.cmd",
        "Run a shell command on each node; the step fails with its exit code. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"command\",\"env_secret\"}}",
    )
}

/// `upload/<node>`: a local file or folder copied onto the node.
pub struct Upload;

/// Where `upload/<node>` put it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uploaded {
    /// The path on the node.
    pub uploaded: String,
}

impl Step for Upload {
    const KIND: &'static str = "upload";
    type Params = NodeParams;
    type Output = Uploaded;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Uploaded, StepError> {
        let i: NodesInput = ctx.input()?;
        let a: UploadArgs = i.args()?;
        let r = remote(&ctx, &i).await?;
        copy(&ctx, &r, &a.src, &a.dst).await?;
        for c in &a.more {
            copy(&ctx, &r, &c.src, &c.dst).await?;
        }
        Ok(Uploaded { uploaded: a.dst })
    }
}

/// A local file or folder copied to `dst` on the node.
async fn copy(
    ctx: &StepContext,
    r: &tasks::ssh::Remote,
    src: &std::path::Path,
    dst: &str,
) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(src)
        .map_err(|e| StepError::permanent(format!("{}: {e}", src.display())))?;
    if meta.is_dir() {
        r.upload_tree(src, dst).await.map_err(super::ssh_error)?;
    } else {
        let data = std::fs::read(src)
            .map_err(|e| StepError::permanent(format!("{}: {e}", src.display())))?;
        r.upload(&data, dst, meta.permissions().mode() & 0o777)
            .await
            .map_err(super::ssh_error)?;
    }
    ctx.log.info(format!("{} → {dst}", src.display()));
    Ok(())
}

/// `node.upload`: a local file or folder onto each node.
pub fn upload() -> Workflow {
    simple::<Upload>(
        "node.upload",
        "Copy a local file or folder to a path on each node. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"src\",\"dst\"}}",
    )
}

/// `publish/<node>`: an image archive loaded into the node's podman.
pub struct Publish;

/// What `publish/<node>` loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loaded {
    /// The images, as podman names them.
    pub loaded: Vec<String>,
}

impl Step for Publish {
    const KIND: &'static str = "publish";
    type Params = NodeParams;
    type Output = Loaded;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Loaded, StepError> {
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
        let loaded = out
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
        Ok(Loaded { loaded })
    }
}

/// `image.publish`: an image archive loaded into each node's podman.
pub fn publish_image() -> Workflow {
    simple::<Publish>(
        "image.publish",
        "Load a local image archive (podman/docker save) into podman on each node. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"file\"}}",
    )
}

/// `gc/<node>`: `nix-collect-garbage -d`.
pub struct Gc;

impl Step for Gc {
    const KIND: &'static str = "gc";
    type Params = NodeParams;
    type Output = Exit;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Exit, StepError> {
        run_logged(&ctx, "nix-collect-garbage -d").await
    }
}

/// `nix.gc`: `nix-collect-garbage -d` on each node.
pub fn gc() -> Workflow {
    simple::<Gc>(
        "nix.gc",
        "Collect garbage in each node's Nix store (nix-collect-garbage -d). Input: {\"cluster\",\"dir\",\"nodes\"}",
    )
}

/// `rollback/<node>`: back to the previous NixOS generation.
pub struct Rollback;

impl Step for Rollback {
    const KIND: &'static str = "rollback";
    type Params = NodeParams;
    type Output = Exit;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Exit, StepError> {
        run_logged(&ctx, "nixos-rebuild switch --rollback").await
    }
}

/// `nixos.rollback`: back to each node's previous generation.
pub fn rollback() -> Workflow {
    simple::<Rollback>(
        "nixos.rollback",
        "Switch each node back to its previous NixOS generation. Input: {\"cluster\",\"dir\",\"nodes\"}",
    )
}

/// `upgrade/<node>`: `nixos-rebuild switch --upgrade`.
pub struct Upgrade;

impl Step for Upgrade {
    const KIND: &'static str = "upgrade";
    type Params = NodeParams;
    type Output = Exit;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Exit, StepError> {
        let i: NodesInput = ctx.input()?;
        let a: UpgradeArgs = match i.args.is_null() {
            true => UpgradeArgs {
                batch: 1,
                channel: None,
            },
            false => i.args()?,
        };
        let command = match &a.channel {
            Some(channel) => switch_channel(channel),
            None => String::new(),
        } + "nixos-rebuild switch --upgrade";
        let out = run_logged(&ctx, &command).await?;
        ctx.log.info(format!("{} upgraded", p.node));
        Ok(out)
    }
}

/// The shell that switches the node's `nixos` channel to `channel` unless
/// it runs that release already (as the Dart tool does before an upgrade).
fn switch_channel(channel: &str) -> String {
    let release = channel.strip_prefix("nixos-").unwrap_or(channel);
    let q = shell_quote(&format!("https://nixos.org/channels/{channel}"));
    format!(
        "case \"$(nixos-version)\" in {release}*) ;; *) nix-channel --add {q} nixos || exit $? ;; esac; "
    )
}

/// The description `nix-infra workflows` shows for [`upgrade`].
const UPGRADE_ABOUT: &str = "Upgrade NixOS on the nodes in batches (nixos-rebuild switch \
    --upgrade); the first failed batch leaves the later ones untouched. Input: \
    {\"cluster\",\"dir\",\"nodes\",\"args\":{\"batch\"}}";

/// `nixos.upgrade`: rolling, `args.batch` nodes at a time; a failed batch stops the rest.
pub fn upgrade() -> Workflow {
    Workflow::new("nixos.upgrade", 1)
        .about(UPGRADE_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let a: UpgradeArgs = serde_json::from_value(if i.args.is_null() {
                json!({})
            } else {
                i.args.clone()
            })
            .map_err(|e| engine::PlanError::Input(format!("args: {e}")))?;
            if a.batch == 0 {
                return Err(engine::PlanError::Input("batch must be at least 1".into()));
            }
            let mut steps = vec![single::<Locate>()];
            let mut previous: Vec<String> = Vec::new();
            for batch in i.nodes.chunks(a.batch) {
                let mut this = Vec::new();
                for n in batch {
                    let mut up = node_step::<Upgrade>(&n.name)
                        .after(Locate::KIND)
                        .retry(RetryPolicy::none());
                    for prev in &previous {
                        up = up.after(prev.clone());
                    }
                    this.push(up.name.clone());
                    steps.push(up);
                }
                previous = this;
            }
            Ok(Plan::new(steps))
        })
        .with::<Locate>()
        .with::<Upgrade>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::ErrorClass;

    #[test]
    fn a_command_cut_off_may_have_run_and_is_never_retried() {
        let node = || "w1".to_string();
        let cut = user_command_error(
            SshError::Io {
                node: node(),
                reason: "the remote process has terminated".into(),
            },
            &[],
        );
        assert_eq!(cut.class, ErrorClass::Permanent);
        assert!(cut.message.contains(MAY_HAVE_RUN), "{}", cut.message);
        let killed = SshError::Exit {
            node: node(),
            command: "sh -s".into(),
            code: -1,
            stderr_tail: "secret-value here".into(),
        };
        let killed = user_command_error(killed, &["secret-value".into()]);
        assert!(killed.message.contains(MAY_HAVE_RUN) && !killed.message.contains("secret-value"));
        // Never sent: trying again is safe.
        let unreachable = SshError::Unreachable {
            node: node(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            user_command_error(unreachable, &[]).class,
            ErrorClass::Retryable
        );
        let exit = SshError::Exit {
            node: node(),
            command: "sh -s".into(),
            code: 3,
            stderr_tail: "no".into(),
        };
        let exit = user_command_error(exit, &[]);
        assert_eq!(
            (exit.class, exit.message.as_str()),
            (ErrorClass::Permanent, "exit 3: no")
        );
    }
}
