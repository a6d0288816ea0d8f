//! `nix-infra mcp`: the cluster for AI agents over MCP (see the `mcp` crate).

use crate::args::Global;
use crate::{Context, Failure};
use clap::{Args, ValueEnum};
use std::time::Duration;
use workflows::request::Origin;

/// Which tools the server offers.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProfileArg {
    /// The Dart nix-infra-cluster-mcp's tools on cluster nodes, with etcd.
    Cluster,
    /// The Dart nix-infra-machine-mcp's tools on fleet nodes.
    Fleet,
    /// nix-prefetch-url, the repo's files, check and plan (the Dart nix-infra-dev-mcp).
    Dev,
}

/// `nix-infra mcp`
#[derive(Args, Debug)]
pub struct McpArgs {
    /// The tool set.
    #[arg(long, value_enum, default_value = "cluster")]
    profile: ProfileArg,
    /// Offer the tools that change nodes and runs: remote-command beyond the
    /// read-only list, file-upload, update-node, deploy-apps, action,
    /// run_resume, run_cancel. Each call is a durable run, locked per node,
    /// listed in `runs list`.
    #[arg(long)]
    allow_changes: bool,
    /// Serve streamable HTTP at http://ADDR/mcp (loopback only) instead of
    /// stdio; every request needs `Authorization: Bearer TOKEN`, the
    /// dashboard's API token (NIX_INFRA_API_TOKEN, or DIR/.nix-infra/api-token).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Seconds a read on a node may take before it is stopped.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    read_timeout: u64,
}

/// Serves until the client closes stdin (stdio), or Ctrl-C or SIGTERM.
pub async fn run(global: Global, args: McpArgs) -> Result<(), Failure> {
    // The repo must open before anything is served: a bad .env is refused here.
    global.origin().cluster()?;
    if let Some(addr) = args.listen
        && !addr.ip().is_loopback()
    {
        return Err(Failure::usage(format!(
            "--listen {addr}: MCP over HTTP serves on loopback only (127.0.0.1 or ::1)"
        )));
    }
    let ctx = Context::open(global).await?;
    let profile = match args.profile {
        ProfileArg::Cluster => mcp::Profile::Cluster,
        ProfileArg::Fleet => mcp::Profile::Fleet,
        ProfileArg::Dev => mcp::Profile::Dev,
    };
    let mut opts = mcp::Options::new(
        Origin {
            // An agent may not make this process read files for it.
            local_files: false,
            ..ctx.global.origin()
        },
        profile,
    );
    opts.allow_changes = args.allow_changes;
    opts.read_timeout = Duration::from_secs(args.read_timeout);
    let server = mcp::Mcp::new(ctx.engine.clone(), opts);
    let changes = if args.allow_changes {
        "changes allowed"
    } else {
        "read-only"
    };
    match args.listen {
        None => {
            eprintln!(
                "nix-infra mcp ({} profile, {changes}) on stdio",
                profile.as_str()
            );
            tokio::select! {
                r = mcp::serve_stdio(server.clone()) => r.map_err(Failure::Other),
                _ = crate::signal::stop_requested() => {
                    server.shutdown().await;
                    Ok(())
                }
            }
        }
        Some(addr) => http(&ctx, server, addr, changes).await,
    }
}

async fn http(
    ctx: &Context,
    server: mcp::Mcp,
    addr: std::net::SocketAddr,
    changes: &str,
) -> Result<(), Failure> {
    let (token, from) = crate::serve::token(&ctx.global.working_dir)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let router = mcp::http_router(server.clone(), token, stop.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Other(e.into()))?;
    eprintln!("nix-infra mcp ({changes}) on http://{addr}/mcp (API token: {from})");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::signal::stop_requested().await;
            stop.cancel();
        })
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    server.shutdown().await;
    Ok(())
}
