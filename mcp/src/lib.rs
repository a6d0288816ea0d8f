//! # mcp: the cluster for AI agents
//!
//! `nix-infra mcp` is a [Model Context Protocol](https://modelcontextprotocol.io)
//! server (over stdio, or streamable HTTP behind the dashboard's token) that
//! lets an agent read a cluster and, when the user allows it, change it.
//! It offers the Dart nix-infra's MCP tools under their names and arguments
//! (`remote-command`, `list-available-nodes`, `etcd`, `journalctl`,
//! `systemctl`, `configuration-files`, `system-stats`, `file-upload`,
//! `nix-prefetch-url`), and nix-infra's own (`runs_list`, `run_show`,
//! `run_logs`, `run_resume`, `run_cancel`, `plan`, `check`, `update-node`,
//! `deploy-apps`, `action`). The repo's configuration files are also MCP
//! resources.
//!
//! ```text
//!   agent ─► rmcp (stdio | HTTP + token) ─► Mcp ─┬─► workflows::agent  reads: checked, direct over SSH
//!                                                 ├─► Request::check ─► engine run (locked per node,
//!                                                 │     traced, in `runs list`, resumable)
//!                                                 └─► engine          runs_list, run_show, run_logs
//! ```
//!
//! **Read-only by default.** A command an agent runs must pass the
//! read-only grammar ([`workflows::agent::ReadOnly`]); what does not is
//! refused with the reason. Tools that change a node exist only with
//! `--allow-changes`, and each call of one is a durable run whose result
//! carries the run id and each node's result. Secrets never leave: an
//! action's output stored as a secret is never logged, and `env_vars`
//! values travel in the run's own encrypted secret, never in its input.
//!
//! ```no_run
//! # async fn demo(engine: engine::Engine, origin: workflows::request::Origin) -> anyhow::Result<()> {
//! let server = mcp::Mcp::new(engine, mcp::Options::new(origin, mcp::Profile::Cluster));
//! mcp::serve_stdio(server).await
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod changes;
mod http;
mod nodes;
mod prefetch;
mod reply;
mod repo;
mod runs;

pub use http::router as http_router;

use engine::Engine;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool_handler};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use workflows::request::Origin;

/// Which tool set a server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The Dart `nix-infra-cluster-mcp`'s tools, on cluster nodes (with `etcd`).
    Cluster,
    /// The Dart `nix-infra-machine-mcp`'s tools, on fleet nodes (no `etcd`).
    Fleet,
    /// The Dart `nix-infra-dev-mcp`'s `nix-prefetch-url`, with the repo's files, `check` and `plan`.
    Dev,
}

impl Profile {
    /// The name, as `--profile` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Cluster => "cluster",
            Profile::Fleet => "fleet",
            Profile::Dev => "dev",
        }
    }
}

/// How a server is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cluster repo and its env file.
    pub origin: Origin,
    /// The tool set.
    pub profile: Profile,
    /// Whether the tools that change nodes and runs exist.
    pub allow_changes: bool,
    /// How long a read may take on a node.
    pub read_timeout: Duration,
}

impl Options {
    /// Read-only, with the default read timeout.
    pub fn new(origin: Origin, profile: Profile) -> Options {
        Options {
            origin,
            profile,
            allow_changes: false,
            read_timeout: workflows::agent::remote::READ_TIMEOUT,
        }
    }
}

/// What every tool call shares.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) engine: Engine,
    /// Runs this server executes; waited for at shutdown.
    pub(crate) runs: TaskTracker,
    /// Fired at shutdown: runs in flight are handed back, resumable.
    pub(crate) stop: CancellationToken,
}

/// The MCP server: one per process, cloned per session.
#[derive(Clone)]
pub struct Mcp {
    pub(crate) shared: Arc<Shared>,
    tool_router: ToolRouter<Mcp>,
}

impl Mcp {
    /// A server over `engine` (opened on the state database) with `opts`.
    pub fn new(engine: Engine, opts: Options) -> Mcp {
        let mut tools = Mcp::repo_tools();
        tools.merge(Mcp::run_tools());
        match opts.profile {
            Profile::Cluster => {
                tools.merge(Mcp::node_tools());
                tools.merge(Mcp::etcd_tools());
            }
            Profile::Fleet => tools.merge(Mcp::node_tools()),
            Profile::Dev => tools.merge(Mcp::dev_tools()),
        }
        if opts.allow_changes {
            tools.merge(Mcp::run_control_tools());
            if opts.profile != Profile::Dev {
                tools.merge(Mcp::change_tools());
            }
        }
        Mcp {
            shared: Arc::new(Shared {
                opts,
                engine,
                runs: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
            tool_router: tools,
        }
    }

    /// The names of the tools this server offers, sorted.
    pub fn tool_names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.into())
            .collect();
        n.sort();
        n
    }

    /// Hands back every run this server executes (each stays resumable)
    /// and waits until they have stopped.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.runs.close();
        self.shared.runs.wait().await;
    }

    pub(crate) fn opts(&self) -> &Options {
        &self.shared.opts
    }

    /// Whether this server works on fleet nodes.
    pub(crate) fn fleet(&self) -> bool {
        self.shared.opts.profile == Profile::Fleet
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .build();
        info.server_info = Implementation::new(
            format!("nix-infra-{}-mcp", self.opts().profile.as_str()),
            env!("CARGO_PKG_VERSION"),
        );
        info.instructions = Some(instructions(self.opts()));
        info
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, rmcp::ErrorData> {
        Ok(repo::list_resources(self))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        repo::read_resource(self, &request.uri)
    }
}

fn instructions(o: &Options) -> String {
    let changes = if o.allow_changes {
        "Changes are allowed: each call of a changing tool (remote-command outside the read-only \
         list, file-upload, update-node, deploy-apps, action, run_resume, run_cancel) is a durable \
         nix-infra run, locked per node; its result carries the run id. Use plan first to see what a \
         change would do."
    } else {
        "Read-only: commands must pass the read-only grammar; tools that change nodes are not \
         offered (the user starts the server with --allow-changes to offer them)."
    };
    let dir = std::fs::canonicalize(&o.origin.dir).unwrap_or_else(|_| o.origin.dir.clone());
    format!(
        "nix-infra cluster repo {} ({} profile). {changes} Node names are the cluster's \
         (list-available-nodes); several nodes are given as a comma-separated list.",
        dir.display(),
        o.profile.as_str()
    )
}

/// Serves `server` on this process's stdin and stdout until the client
/// closes them; then hands back the runs still executing.
pub async fn serve_stdio(server: Mcp) -> anyhow::Result<()> {
    let running = server.clone().serve(rmcp::transport::stdio()).await?;
    let ended = running.waiting().await;
    server.shutdown().await;
    ended?;
    Ok(())
}
