//! `nix-infra ssh-key …`: the cluster's SSH key, locally and at the provider.

use crate::Failure;
use crate::args::{Global, Output};
use clap::{Args, Subcommand};
use serde_json::json;

/// `nix-infra ssh-key …`
#[derive(Subcommand, Debug)]
pub enum SshKeyCommand {
    /// Create the cluster's SSH key (keys/id_ed25519) if there is none.
    Create(KeyArgs),
    /// Upload the cluster's public key to the provider (adopting an identical one).
    Add(KeyArgs),
    /// Delete the cluster's key from the provider (servers keep theirs).
    Remove(KeyArgs),
}

/// The Dart tool's options of `ssh-key …`, accepted so its scripts run.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The Dart tool's key name (its ssh/NAME): not used; the cluster's key is
    /// keys/id_ed25519, named nix-infra-<cluster> at the provider.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The Dart tool's key comment: not used (the key's comment is nix-infra-<cluster>).
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Accepted (nothing is asked).
    #[arg(long)]
    pub batch: bool,
}

/// Runs one `ssh-key` subcommand.
pub async fn run(global: &Global, cmd: SshKeyCommand) -> Result<(), Failure> {
    let c = global.origin().cluster()?;
    let say = |text: String, value: serde_json::Value| {
        if global.output == Output::Json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    };
    // The cluster's key: the Dart tool's ssh/$SSH_KEY, or keys/id_ed25519.
    let key = c.ssh_key();
    let key_name = key.provider_name.clone();
    match cmd {
        SshKeyCommand::Create(_) => {
            let made = workflows::init::make_key(&key.private, &c.name)?;
            let what = if made { "created" } else { "kept (exists)" };
            let path = key.private.strip_prefix(&c.dir).unwrap_or(&key.private);
            say(
                format!("{what} {}", path.display()),
                json!({"created": made}),
            );
        }
        SshKeyCommand::Add(_) => {
            c.need_cloud("`ssh-key add`")?;
            let public = key.public.clone();
            let text = std::fs::read_to_string(&public).map_err(|e| {
                Failure::usage(format!(
                    "{}: {e} (run `nix-infra ssh-key create`)",
                    public.display()
                ))
            })?;
            let k = c
                .provider()?
                .ensure_ssh_key(&key_name, &text)
                .await
                .map_err(|e| Failure::Other(e.into()))?;
            say(
                format!("ssh key {} ({}) at the provider", k.name, k.fingerprint),
                json!({"name": k.name, "id": k.id, "fingerprint": k.fingerprint}),
            );
        }
        SshKeyCommand::Remove(_) => {
            c.need_cloud("`ssh-key remove`")?;
            let removed = c
                .provider()?
                .delete_ssh_key(&key_name)
                .await
                .map_err(|e| Failure::Other(e.into()))?;
            let what = if removed { "removed" } else { "not found:" };
            say(
                format!("{what} ssh key {key_name}"),
                json!({"removed": removed}),
            );
        }
    }
    Ok(())
}
