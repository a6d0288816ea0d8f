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
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(global: Global, args: ServeArgs) -> Result<(), Failure> {
    let ctx = Context::open(global).await?;
    crate::serve::run(&ctx, args.listen).await
}
