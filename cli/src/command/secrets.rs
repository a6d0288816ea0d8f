//! `nix-infra secrets …`: the cluster's age-encrypted secrets, and their rotation as a run.

use crate::args::{ExecArgs, Global, Output};
use crate::{Failure, start};
use age::secrecy::{ExposeSecret, SecretSlice};
use clap::Subcommand;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use workflows::request::Request;

/// `nix-infra secrets …`
#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Store a secret (from --secret-file, or stdin; --secret works but shows in `ps`).
    Store {
        /// The secret's name.
        #[arg(long)]
        name: String,
        /// The value (visible to other users in the process list).
        #[arg(long, conflicts_with = "secret_file")]
        secret: Option<String>,
        /// A file holding the value.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// Accepted (nothing is asked).
        #[arg(long)]
        batch: bool,
    },
    /// Print a secret's current value to stdout.
    Get {
        /// The secret's name.
        #[arg(long)]
        name: String,
    },
    /// List secrets and their versions (never their values).
    List,
    /// Delete a secret and all its versions.
    Remove {
        /// The secret's name.
        #[arg(long)]
        name: String,
    },
    /// Move the Dart nix-infra's secrets (flat secrets/<name> files, which
    /// its openssl call left base64-encoded, not encrypted) into the age
    /// store, and remove the files: no plaintext or base64 copy stays.
    Import,
    /// Rotate a secret as a durable run (secret.rotate): stage a new version,
    /// deploy it where it is used, restart, verify, retire the old one.
    Rotate {
        /// The secret's name.
        #[arg(long)]
        name: String,
        /// Random bytes of a generated value (hex-encoded).
        #[arg(long, default_value_t = 32, conflicts_with = "from_action")]
        bytes: usize,
        /// Take the new value from an app's action: APP@NODE, with --action-arg for its arguments.
        #[arg(long, value_name = "APP@NODE")]
        from_action: Option<String>,
        /// Arguments to the action (repeatable).
        #[arg(long = "action-arg", requires = "from_action")]
        action_args: Vec<String>,
        #[command(flatten)]
        exec: ExecArgs,
    },
}

/// Runs one `secrets` subcommand.
pub async fn run(global: Global, cmd: SecretsCommand) -> Result<(), Failure> {
    if let SecretsCommand::Rotate {
        name,
        bytes,
        from_action,
        action_args,
        exec,
    } = cmd
    {
        let request = Request::RotateSecret {
            name,
            bytes,
            from_action,
            action_args,
        };
        return start::request(global, request, &exec).await;
    }
    let output = global.output;
    let store = global.origin().cluster()?.secrets()?;
    let fail = |e: tasks::secrets::SecretError| match e {
        tasks::secrets::SecretError::Io(_) => Failure::Other(e.into()),
        other => Failure::Usage(other.into()),
    };
    match cmd {
        SecretsCommand::Rotate { .. } => unreachable!("started above"),
        SecretsCommand::Store {
            name,
            secret,
            secret_file,
            ..
        } => {
            let value = match (secret, secret_file) {
                (Some(s), None) => {
                    eprintln!(
                        "warning: --secret is visible to other users in the process list; prefer --secret-file or stdin"
                    );
                    s.into_bytes()
                }
                (None, Some(f)) => std::fs::read(&f)
                    .map_err(|e| Failure::usage(format!("cannot read {}: {e}", f.display())))?,
                (None, None) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("reading the secret from stdin (end with Ctrl-D)");
                    }
                    let mut v = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut v)
                        .map_err(|e| Failure::Other(e.into()))?;
                    v
                }
                (Some(_), Some(_)) => unreachable!("clap: conflicting arguments"),
            };
            if value.is_empty() {
                return Err(Failure::usage("the secret is empty; nothing stored"));
            }
            let v = store
                .store(&name, &SecretSlice::from(value))
                .map_err(fail)?;
            if output == Output::Json {
                println!("{}", serde_json::json!({"name": name, "version": v}));
            } else {
                println!("stored secret {name} (version {v})");
            }
        }
        SecretsCommand::Get { name } => {
            let v = store.get(&name).map_err(fail)?;
            let mut out = std::io::stdout();
            out.write_all(v.expose_secret())
                .and_then(|_| out.flush())
                .map_err(|e| Failure::Other(e.into()))?;
        }
        SecretsCommand::List => {
            let list = store.list().map_err(fail)?;
            if output == Output::Json {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
            } else if list.is_empty() {
                println!("no secrets");
            } else {
                for s in list {
                    let pending = s
                        .pending
                        .map(|p| format!(" (v{p} staged)"))
                        .unwrap_or_default();
                    println!("{:<32} v{}{pending}", s.name, s.current.unwrap_or(0));
                }
            }
        }
        SecretsCommand::Remove { name } => {
            store.remove(&name).map_err(fail)?;
            println!("removed secret {name}");
        }
        SecretsCommand::Import => {
            let moved = tasks::dart_secrets::import(&store).map_err(fail)?;
            if output == Output::Json {
                let moved: Vec<_> = moved
                    .iter()
                    .map(|m| serde_json::json!({"name": m.name, "version": m.version}))
                    .collect();
                println!("{}", serde_json::json!({ "imported": moved }));
            } else if moved.is_empty() {
                println!("no Dart nix-infra secrets (flat secrets/<name> files) to import");
            } else {
                for m in &moved {
                    println!(
                        "imported secrets/{} into the age store (version {}); the base64 file is removed",
                        m.name, m.version
                    );
                }
            }
        }
    }
    Ok(())
}
