//! The tools that change nodes, offered only with `--allow-changes`:
//! `file-upload` (the Dart tool's), `update-node`, `deploy-apps` and
//! `action`; and how every change runs: a [`Request`] checked as the CLI
//! checks it, created as a run, executed here once it holds its nodes'
//! locks, and answered with the run id, each node's result and output.

use crate::Mcp;
use crate::reply::{cluster_error, failed, ok, refused, unavailable};
use engine::{Observer, RunStatus};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::json;
use std::path::{Component, Path, PathBuf};
use tokio_util::sync::CancellationToken;
use workflows::request::Request;

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct UploadArgs {
    /// A node, or several separated by commas.
    target: String,
    /// Files or folders in the cluster repo (relative to it), comma-separated.
    local_path: String,
    /// The folder on the node to upload into (default /root/uploads).
    #[serde(default)]
    remote_path: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct UpdateArgs {
    /// A node, or several separated by commas.
    target: String,
    /// The NixOS release the configuration renders with (`24.11`).
    #[serde(default)]
    nixos_version: Option<String>,
    /// Rebuild after the upload (default true).
    #[serde(default)]
    rebuild: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct DeployArgs {
    /// A node, or several separated by commas.
    target: String,
    /// Rebuild after the upload (default true).
    #[serde(default)]
    rebuild: Option<bool>,
    /// Take nodes/<node>.nix from this folder's nodes/ (the Dart tool's --test-dir).
    #[serde(default)]
    test_dir: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ActionArgs {
    /// A node, or several separated by commas.
    target: String,
    /// The app whose app_modules/<app>/action.sh runs.
    app: String,
    /// The action's command line (split into words as a shell does).
    #[serde(default)]
    cmd: Option<String>,
    /// More arguments, after cmd's words.
    #[serde(default)]
    args: Vec<String>,
    /// Variables for the action, `KEY=VALUE,…`; `[%%key%%]` in a value is the
    /// node's. They travel encrypted, never in the run's input or logs.
    #[serde(default)]
    env_vars: Option<String>,
    /// Store the action's output as this secret (never shown) instead of returning it.
    #[serde(default)]
    save_as_secret: Option<String>,
}

/// Folders and files of a repo that hold keys, secrets or state, never uploaded.
const PRIVATE: [&str; 6] = ["secrets", "ssh", "keys", "ca", "certs", "servers.yaml"];

/// Why a path relative to the repo may not leave it: a hidden part, or a
/// private folder or file first (compared without case, as macOS does).
fn private_part(rel: &Path) -> Option<String> {
    let mut parts = rel.components();
    let first = parts.clone().next();
    if let Some(Component::Normal(f)) = first {
        let f = f.to_string_lossy().to_lowercase();
        if PRIVATE.contains(&f.as_str()) {
            return Some(format!("{f} holds keys or secrets and is never uploaded"));
        }
    }
    parts.find_map(|c| match c {
        Component::Normal(s) if s.to_string_lossy().starts_with('.') => Some(format!(
            "{} is hidden and never uploaded",
            s.to_string_lossy()
        )),
        Component::Normal(_) | Component::CurDir => None,
        _ => Some("give a path inside the cluster repo, without `..`".into()),
    })
}

/// A local path to upload: inside the repo as given and once links are
/// followed, nothing hidden or private in it, nor anywhere under a folder.
fn upload_path(repo: &Path, p: &str) -> Result<PathBuf, String> {
    let rel = Path::new(p.trim());
    if rel.is_absolute() || rel.as_os_str().is_empty() {
        return Err(format!(
            "{p}: give a path inside the cluster repo, relative to it"
        ));
    }
    if let Some(why) = private_part(rel) {
        return Err(format!("{p}: {why}"));
    }
    let root = repo
        .canonicalize()
        .map_err(|e| format!("{}: {e}", repo.display()))?;
    let full = repo.join(rel);
    let real = full.canonicalize().map_err(|e| format!("{p}: {e}"))?;
    let inside = real
        .strip_prefix(&root)
        .map_err(|_| format!("{p}: leads outside the cluster repo"))?;
    if let Some(why) = private_part(inside) {
        return Err(format!("{p}: leads to {}, and {why}", inside.display()));
    }
    if real.is_dir() {
        let mut stack = vec![real];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
                let e = e.map_err(|e| e.to_string())?;
                let name = e.file_name().to_string_lossy().into_owned();
                let lower = name.to_lowercase();
                if name.starts_with('.')
                    || PRIVATE.contains(&lower.as_str())
                    || e.path().is_symlink()
                {
                    return Err(format!(
                        "{p}: holds {}, which is hidden, private or a link; upload its files instead",
                        e.path().strip_prefix(&root).unwrap_or(&e.path()).display()
                    ));
                }
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    Ok(full)
}

#[tool_router(router = change_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "file-upload",
        description = "Upload files or folders of the cluster repo to nodes (into remote_path, default \
            /root/uploads), as a durable nix-infra run (cluster upload). Hidden files and the repo's \
            keys, certificates and secrets are never uploaded.",
        annotations(destructive_hint = false)
    )]
    async fn file_upload(
        &self,
        Parameters(a): Parameters<UploadArgs>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let repo = &self.opts().origin.dir;
        let mut files = Vec::new();
        for p in a.local_path.split(',').filter(|p| !p.trim().is_empty()) {
            match upload_path(repo, p) {
                Ok(f) => files.push(f),
                Err(e) => return refused(e),
            }
        }
        if files.is_empty() {
            return refused("local_path names no file");
        }
        let request = Request::Upload {
            target: a.target.replace(',', " "),
            fleet: self.fleet(),
            src: None,
            dst: None,
            files,
            remote_path: a.remote_path,
        };
        self.run_request(request, ct).await
    }

    #[tool(
        name = "update-node",
        description = "Re-render the nodes' configuration from the repo, upload it and rebuild \
            (cluster update-node), as a durable run locked per node. Use plan first to see the steps.",
        annotations(destructive_hint = true)
    )]
    async fn update_node(
        &self,
        Parameters(a): Parameters<UpdateArgs>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let request = Request::UpdateNode {
            target: a.target.replace(',', " "),
            fleet: self.fleet(),
            ctrl_nodes: None,
            node_type: None,
            nixos_version: a.nixos_version,
            rebuild: a.rebuild.unwrap_or(true),
        };
        self.run_request(request, ct).await
    }

    #[tool(
        name = "deploy-apps",
        description = "Deploy the apps the nodes' configuration names (cluster deploy-apps), as a \
            durable run locked per node.",
        annotations(destructive_hint = true)
    )]
    async fn deploy_apps(
        &self,
        Parameters(a): Parameters<DeployArgs>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let request = Request::DeployApps {
            target: a.target.replace(',', " "),
            fleet: self.fleet(),
            rebuild: a.rebuild.unwrap_or(true),
            test_dir: match a
                .test_dir
                .as_deref()
                .map(|d| upload_path(&self.opts().origin.dir, d))
                .transpose()
            {
                Ok(d) => d,
                Err(e) => return refused(format!("test_dir: {e}")),
            },
        };
        self.run_request(request, ct).await
    }

    #[tool(
        name = "action",
        description = "Run an app's action (app_modules/<app>/action.sh) on nodes (cluster action), \
            as a durable run; with save_as_secret its output is stored as a secret and never shown.",
        annotations(destructive_hint = true)
    )]
    async fn action(
        &self,
        Parameters(a): Parameters<ActionArgs>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let request = Request::Action {
            target: a.target.replace(',', " "),
            fleet: self.fleet(),
            app: a.app,
            cmd: a.cmd,
            args: a.args,
            env_vars: a.env_vars,
            save_as_secret: a.save_as_secret,
        };
        self.run_request(request, ct).await
    }
}

impl Mcp {
    /// Checks `request` as the CLI does, creates its run and executes it here.
    pub(crate) async fn run_request(
        &self,
        request: Request,
        ct: CancellationToken,
    ) -> CallToolResult {
        let checked = match request.check(&self.opts().origin, None).await {
            Ok(c) => c,
            Err(e) => return cluster_error(e),
        };
        if let Some(s) = &checked.run_secret
            && let Err(e) = s.store()
        {
            return cluster_error(e);
        }
        let engine = &self.shared.engine;
        let created = match engine
            .create(&checked.workflow, checked.input, checked.run_id)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                if let Some(s) = &checked.run_secret {
                    s.forget();
                }
                return unavailable(e);
            }
        };
        let id = created.record().id.clone();
        tracing::info!(run = %id, workflow = %checked.workflow, "started run");
        self.execute_run(id, ct).await
    }

    /// Executes run `id` here once it holds its locks (waiting for them),
    /// and answers with how it ended. `ct` (the client cancelling the call)
    /// cancels the run; the server stopping hands it back, resumable. The
    /// run's own secret is removed once it succeeded.
    pub(crate) async fn execute_run(&self, id: String, ct: CancellationToken) -> CallToolResult {
        let shared = self.shared.clone();
        let run = id.clone();
        let job = self.shared.runs.spawn(async move {
            let engine = &shared.engine;
            let state = engine.load(&run).await?;
            let stop = shared.stop.clone();
            worker::execute_locked(engine, state, ct, stop, Observer::none()).await
        });
        match job.await {
            Ok(Ok(Some(outcome))) if outcome.status == RunStatus::Succeeded => {
                // Its own secret (`env_vars`), new or resumed, is no longer needed.
                if let Ok(state) = self.shared.engine.load(&id).await {
                    workflows::request::forget_run_secret(&self.opts().origin, &state);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return unavailable(format!("run {id}: {e}")),
            Err(e) => return unavailable(format!("run {id}: {e}")),
        }
        self.run_report(&id).await
    }

    /// A run's result: its id, status, each node's result and output.
    pub(crate) async fn run_report(&self, id: &str) -> CallToolResult {
        let engine = &self.shared.engine;
        let state = match engine.load(id).await {
            Ok(s) => s,
            Err(e) => return unavailable(e),
        };
        let output = workflows::report::command_output(engine, &state)
            .await
            .unwrap_or_default();
        let r = &state.run;
        let value = json!({
            "run_id": r.id,
            "workflow": r.workflow,
            "status": r.status,
            "error": r.error,
            "nodes": workflows::report::nodes(&state),
            "output": output,
            "trace_id": observability::traces::trace_id(&r.id).to_string(),
            "inspect": format!("nix-infra runs show {}", r.id),
        });
        if r.status == RunStatus::Succeeded {
            ok(value)
        } else {
            failed(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::upload_path;

    #[test]
    fn only_the_repos_own_files_are_uploaded() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str| {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "x").unwrap();
        };
        w("app_modules/hello/default.nix");
        w("app_modules/bad/.env");
        w("app_modules/worse/secrets/db");
        w("ca/ca-key.pem");
        std::os::unix::fs::symlink("../ca/ca-key.pem", d.path().join("app_modules/ca.pem"))
            .unwrap();
        assert!(upload_path(d.path(), "app_modules/hello").is_ok());
        for (p, why) in [
            ("app_modules/ca.pem", "leads to ca/ca-key.pem"),
            ("CA/ca-key.pem", "never uploaded"),
            ("app_modules/bad", "holds app_modules/bad/.env"),
            ("app_modules/worse", "holds app_modules/worse/secrets"),
            ("app_modules", "hidden, private or a link"),
            ("/etc/passwd", "relative"),
            ("app_modules/../ca/ca-key.pem", "`..`"),
        ] {
            let e = upload_path(d.path(), p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
