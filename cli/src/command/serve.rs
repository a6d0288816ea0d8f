//! `nix-infra serve`: the dashboard and its JSON API (see `crate::serve`).

use crate::args::Global;
use crate::{Context, Failure};
use clap::Args;

/// `nix-infra serve`
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; loopback unless you put TLS in front.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Who may read: `reads` asks the API token for every page and API call
    /// (a bearer header, or a browser's login at /login); `writes` (the
    /// default) asks it only to start, resume or cancel runs, and serves on
    /// loopback only; `none` serves reads to anyone on any address.
    #[arg(long, value_enum, default_value = "writes")]
    auth: crate::serve_auth::Auth,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(global: Global, args: ServeArgs) -> Result<(), Failure> {
    crate::serve_auth::check_bind(args.listen, args.auth)?;
    let ctx = Context::open(global).await?;
    crate::serve::run(&ctx, args.listen, args.auth).await
}
