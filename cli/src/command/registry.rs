//! `nix-infra registry …`: container images on the nodes.

use crate::args::{Global, RunArgs};
use crate::{Failure, start};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use workflows::request::Request;

/// `nix-infra registry [--target NODES] …`
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// The nodes, space-separated (also accepted before the subcommand, as
    /// the Dart tool takes it) [publish-image default: every cluster node].
    #[arg(long, global = true, value_name = "NODES")]
    pub target: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// `nix-infra registry …`
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Load a local image archive (`podman save`, `docker save`) into podman on the nodes.
    PublishImage {
        /// The image archive.
        #[arg(long)]
        file: PathBuf,
        /// The Dart tool's push to a registry on the node: refused (the image
        /// keeps the names it was saved with).
        #[arg(long, value_name = "NAME")]
        image_name: Option<String>,
        /// With --image-name: refused.
        #[arg(long, value_name = "TAG")]
        image_tag: Option<String>,
        /// With --image-name: the registry on the node's loopback.
        #[arg(long)]
        use_localhost: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The images in podman on the nodes (what publish-image loaded).
    ListImages {
        #[command(flatten)]
        run: RunArgs,
    },
}

/// The command `list-images` runs on each node.
pub const LIST_IMAGES: &str = "podman images --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'";

/// The request a `registry` command makes, and its run options.
pub fn request(args: RegistryArgs) -> Result<(Request, RunArgs), Failure> {
    let target = args.target;
    Ok(match args.command {
        RegistryCommand::PublishImage {
            file,
            image_name,
            image_tag,
            use_localhost,
            run,
        } => {
            let r = Request::PublishImage {
                file,
                target,
                image_name,
                image_tag,
                use_localhost,
            };
            (r, run)
        }
        RegistryCommand::ListImages { run } => {
            let target = target
                .ok_or_else(|| Failure::usage("list-images: give the nodes with --target"))?;
            let r = Request::Cmd {
                target,
                fleet: false,
                command: LIST_IMAGES.into(),
                env_vars: None,
            };
            (r, run)
        }
    })
}

/// Runs one `registry` subcommand.
pub async fn run(global: Global, args: RegistryArgs) -> Result<(), Failure> {
    let (r, run) = request(args)?;
    let checked = start::check(&global, r).await?;
    start::confirm(&checked, run.batch)?;
    start::start(global, checked, &run.exec).await
}
