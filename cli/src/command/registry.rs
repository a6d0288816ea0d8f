//! `nix-infra registry …`: container images on the nodes.

use crate::args::{ExecArgs, Global};
use crate::{Failure, start};
use clap::Subcommand;
use std::path::PathBuf;
use workflows::request::Request;

/// `nix-infra registry …`
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Load a local image archive (`podman save`, `docker save`) into podman on the nodes.
    PublishImage {
        /// The image archive.
        #[arg(long)]
        file: PathBuf,
        /// The nodes, space-separated [default: every cluster node].
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
}

/// Runs one `registry` subcommand.
pub async fn run(global: Global, cmd: RegistryCommand) -> Result<(), Failure> {
    let RegistryCommand::PublishImage { file, target, exec } = cmd;
    start::request(global, Request::PublishImage { file, target }, &exec).await
}
