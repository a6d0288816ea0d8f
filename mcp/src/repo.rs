//! The cluster repo, read-only: `configuration-files` (the Dart tool's
//! tool), the same files as MCP resources (`nix-infra://repo/<path>`),
//! `check` and `plan`; and the registry views the `etcd` tool shows.

use crate::Mcp;
use crate::reply::{cluster_error, failed, ok, refused, unavailable, wrap};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ListResourcesResult, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents,
};
use rmcp::{ErrorData, schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use tasks::registry::AppKind;
use workflows::agent::RepoFiles;
use workflows::cluster::Cluster;
use workflows::domain::Role;
use workflows::request::Request;

/// Where resources live: `nix-infra://repo/<path in the repo>`.
const URI_PREFIX: &str = "nix-infra://repo/";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FilesOperation {
    /// Every file and folder under `path`, recursively.
    ListContent,
    /// One file, its lines numbered `L<n>: `.
    ReadFile,
    /// Several files (`path` comma-separated).
    ReadFiles,
    /// Lines matching `pattern` (a regular expression).
    SearchText,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct FilesArgs {
    /// What to do.
    operation: FilesOperation,
    /// A path relative to the repo (`nodes/worker1.nix`, `modules`; `.`,
    /// the default, is every readable folder); for read-files, paths
    /// separated by commas.
    #[serde(default)]
    path: Option<String>,
    /// search-text: the regular expression to look for.
    #[serde(default)]
    pattern: Option<String>,
    /// search-text: only files whose name matches this glob (`*.nix`).
    #[serde(default, rename = "file-pattern")]
    file_pattern: Option<String>,
    /// search-text: whether case matters (default true).
    #[serde(default, rename = "case-sensitive")]
    case_sensitive: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct CheckArgs {
    /// Nodes to check, separated by spaces or commas (default: every nodes/<node>.nix).
    #[serde(default)]
    target: Option<String>,
    /// The role to check them as: ctrl, cluster, ingress or fleet.
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct PlanArgs {
    /// A nix-infra request, as `POST /api/runs` takes it: `{"request":
    /// "update-node", "target": "worker1"}`, `{"request": "cmd", "target":
    /// "worker1 worker2", "command": "…"}`, `{"request": "deploy-apps",
    /// "target": "worker1"}`, `{"request": "destroy", "target": "worker3"}`,
    /// `{"request": "up", "workers": 3}`, … (add `"fleet": true` for fleet nodes).
    request: serde_json::Map<String, Value>,
}

fn numbered(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(k, l)| format!("L{}: {l}", k + 1))
        .collect();
    lines.join("\n")
}

#[tool_router(router = repo_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "configuration-files",
        description = "Read the cluster repo's configuration: nodes/, node_types/, modules/, \
            app_modules/, __test__/, cli, configuration.nix and flake.nix (never the env file, keys, \
            certificates or secrets). Operations: list-content, read-file, read-files, search-text.",
        annotations(read_only_hint = true)
    )]
    async fn configuration_files(&self, Parameters(a): Parameters<FilesArgs>) -> CallToolResult {
        let files = RepoFiles::new(&self.opts().origin.dir);
        let path = a.path.as_deref().unwrap_or(".");
        let result = match a.operation {
            FilesOperation::ListContent => files.list(path).map(|e| wrap("entries", e)),
            FilesOperation::ReadFile => files
                .read(path)
                .map(|t| json!({"path": path, "content": numbered(&t)})),
            FilesOperation::ReadFiles => {
                let out: Vec<Value> = path
                    .split(',')
                    .map(str::trim)
                    .map(|p| match files.read(p) {
                        Ok(t) => json!({"path": p, "content": numbered(&t)}),
                        Err(e) => json!({"path": p, "error": e.to_string()}),
                    })
                    .collect();
                Ok(wrap("files", out))
            }
            FilesOperation::SearchText => {
                let Some(pattern) = a.pattern.as_deref().filter(|p| !p.is_empty()) else {
                    return refused("search-text needs a pattern");
                };
                files
                    .search(
                        pattern,
                        path,
                        a.file_pattern.as_deref(),
                        a.case_sensitive.unwrap_or(true),
                    )
                    .map(|h| wrap("matches", h))
            }
        };
        result.map_or_else(cluster_error, ok)
    }

    #[tool(
        name = "check",
        description = "The checks every run that renders a node's configuration makes before it \
            exists (placeholders, Nix syntax, secrets), per node, without changing anything.",
        annotations(read_only_hint = true)
    )]
    async fn check(&self, Parameters(a): Parameters<CheckArgs>) -> CallToolResult {
        let role = match a.role.as_deref().map(str::parse::<Role>).transpose() {
            Ok(r) => r,
            Err(e) => return refused(format!("role: {e}")),
        };
        let c = match self.opts().origin.cluster() {
            Ok(c) => c,
            Err(e) => return cluster_error(e),
        };
        let target = a.target.map(|t| t.replace(',', " "));
        match workflows::preflight::check_repo(&c, target.as_deref(), role).await {
            Ok(report) => {
                let value = json!({"ok": report.ok(), "report": report});
                if report.ok() {
                    ok(value)
                } else {
                    failed(value)
                }
            }
            Err(e) => cluster_error(e),
        }
    }

    #[tool(
        name = "plan",
        description = "The steps a nix-infra request would run, checked exactly as running it would \
            check it (the same refusals), without creating a run or changing anything.",
        annotations(read_only_hint = true)
    )]
    async fn plan(&self, Parameters(a): Parameters<PlanArgs>) -> CallToolResult {
        let request: Request = match serde_json::from_value(Value::Object(a.request)) {
            Ok(r) => r,
            Err(e) => return refused(format!("request: {e}")),
        };
        let checked = match request.check(&self.opts().origin, None).await {
            Ok(c) => c,
            Err(e) => return cluster_error(e),
        };
        match workflows::request::plan(&checked.workflow, &checked.input) {
            Ok(plan) => {
                let steps: Vec<Value> = plan
                    .steps
                    .iter()
                    .map(|s| json!({"name": s.name, "kind": s.kind, "after": s.deps, "node": s.subject()}))
                    .collect();
                ok(
                    json!({"workflow": checked.workflow, "confirm": checked.confirm, "steps": steps}),
                )
            }
            Err(e) => cluster_error(e),
        }
    }
}

/// Every configuration file, as a resource.
pub(crate) fn list_resources(mcp: &Mcp) -> ListResourcesResult {
    let files = RepoFiles::new(&mcp.opts().origin.dir);
    let resources = files
        .files()
        .into_iter()
        .map(|p| {
            let mime = if p.ends_with(".nix") {
                "text/x-nix"
            } else {
                "text/plain"
            };
            Resource::new(format!("{URI_PREFIX}{p}"), p).with_mime_type(mime)
        })
        .collect();
    ListResourcesResult::with_all_items(resources)
}

/// One configuration file's text.
pub(crate) fn read_resource(mcp: &Mcp, uri: &str) -> Result<ReadResourceResponse, ErrorData> {
    let Some(path) = uri.strip_prefix(URI_PREFIX) else {
        return Err(ErrorData::resource_not_found(
            format!("{uri}: resources are {URI_PREFIX}<path>"),
            None,
        ));
    };
    let files = RepoFiles::new(&mcp.opts().origin.dir);
    match files.read(path) {
        Ok(text) => Ok(ReadResourceResponse::Complete(ReadResourceResult::new(
            vec![ResourceContents::text(text, uri)],
        ))),
        Err(e) => Err(ErrorData::resource_not_found(e.to_string(), None)),
    }
}

/// The registry read as the `etcd` tool's named views show it; `None`
/// when `query` names no view (it is then an etcdctl command).
pub(crate) async fn registry_view(c: &Cluster, query: &str) -> Option<CallToolResult> {
    let kind = match query {
        "nodes" | "network" => None,
        "services" => Some(AppKind::Service),
        "backends" => Some(AppKind::Backend),
        "frontends" => Some(AppKind::Frontend),
        _ => return None,
    };
    let i = workflows::node::NodesInput::of(c);
    let reg = match workflows::node::open_registry(&i).await {
        Ok(r) => r,
        Err(e) => return Some(unavailable(e.message)),
    };
    let value = match (query, kind) {
        ("nodes", _) => reg.nodes().await.map(|n| wrap("nodes", n)),
        ("network", _) => reg.overlay().await.map(|s| {
            let rows: Vec<Value> = s
                .iter()
                .map(|s| json!({"subnet": s.subnet, "public_ip": s.public_ip}))
                .collect();
            wrap("subnets", rows)
        }),
        (_, Some(kind)) => reg.apps(kind).await.map(|apps| {
            let rows: serde_json::Map<String, Value> = apps
                .into_iter()
                .map(|(name, a)| (name, json!({"meta_data": a.meta, "instances": a.instances})))
                .collect();
            wrap("apps", rows)
        }),
        _ => return None,
    };
    Some(value.map_or_else(unavailable, ok))
}
