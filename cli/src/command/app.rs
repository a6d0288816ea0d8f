//! `nix-infra app …`: app lifecycles, each a typed [`Request`].

use crate::args::{ExecArgs, Global};
use crate::{Failure, start};
use clap::{Args, Subcommand};
use workflows::request::Request;

/// `nix-infra app …`
#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register the app's meta_data (publish port, env prefix, env).
    Register {
        #[command(flatten)]
        app: AppArgs,
        /// The port it publishes.
        #[arg(long)]
        port: u16,
        /// Prefix of the variables other apps get for it (default: APP in upper case).
        #[arg(long)]
        env_prefix: Option<String>,
        /// Extra environment, KEY=VALUE (repeatable).
        #[arg(long = "env-var", value_name = "KEY=VALUE")]
        app_env: Vec<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Upload the app and nodes/<node>.nix to each node, deploy its secrets, rebuild.
    Deploy {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes (their nodes/<node>.nix must import app_modules/<app>).
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Register an instance of the app on each node.
    RegisterInstance {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Remove the app's instance on each node from the registry.
    UnregisterInstance {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes.
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Take the app off each node: unregister its instance, rebuild without it, prune its secrets.
    Remove {
        #[command(flatten)]
        app: AppArgs,
        /// The nodes (their nodes/<node>.nix must no longer import the app).
        #[arg(long, required = true)]
        target: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Remove the app from the registry: its meta_data and every instance.
    Unregister {
        #[command(flatten)]
        app: AppArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
}

/// Which app.
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    /// The app (its folder under app_modules/).
    #[arg(long)]
    pub app: String,
    /// Where it is registered: service, backend or frontend.
    #[arg(long, default_value = "backend")]
    pub kind: String,
}

/// The request an `app` command makes, and its execution options.
pub fn request(cmd: AppCommand) -> (Request, ExecArgs) {
    use AppCommand as A;
    match cmd {
        A::Register {
            app,
            port,
            env_prefix,
            app_env,
            exec,
        } => {
            let AppArgs { app, kind } = app;
            let env = app_env;
            (
                Request::AppRegister {
                    app,
                    kind,
                    port,
                    env_prefix,
                    env,
                },
                exec,
            )
        }
        A::Deploy { app, target, exec } => {
            let AppArgs { app, kind } = app;
            (Request::AppDeploy { app, kind, target }, exec)
        }
        A::Remove { app, target, exec } => {
            let AppArgs { app, kind } = app;
            (Request::AppRemove { app, kind, target }, exec)
        }
        A::RegisterInstance { app, target, exec } => {
            let AppArgs { app, kind } = app;
            (Request::AppRegisterInstance { app, kind, target }, exec)
        }
        A::UnregisterInstance { app, target, exec } => {
            let AppArgs { app, kind } = app;
            (Request::AppUnregisterInstance { app, kind, target }, exec)
        }
        A::Unregister { app, exec } => {
            let AppArgs { app, kind } = app;
            (Request::AppUnregister { app, kind }, exec)
        }
    }
}

/// Runs one `app` subcommand.
pub async fn run(global: Global, cmd: AppCommand) -> Result<(), Failure> {
    let (request, exec) = request(cmd);
    start::request(global, request, &exec).await
}
