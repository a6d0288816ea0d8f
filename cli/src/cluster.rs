//! `nix-infra init` and `nix-infra secrets …`: the cluster directory's keys, CA and secrets.
//!
//! Layout: `keys/age.key` (the cluster identity), `keys/id_ed25519` (the SSH
//! key), `ca/` (root and intermediate CA, node certificates), `secrets/`.

use crate::args::{SecretsCommand, SshKeyCommand};
use crate::{Failure, Output};
use age::secrecy::{ExposeSecret, SecretSlice, SecretString};
use anyhow::anyhow;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use tasks::ca::Ca;
use tasks::secrets::{SecretKey, SecretStore, write_identity};

/// The identity file under a cluster directory.
pub fn identity_path(dir: &Path) -> PathBuf {
    dir.join("keys").join("age.key")
}

/// Variables from the cluster's `.env` (missing file: none).
pub fn read_env(dir: &Path) -> Result<BTreeMap<String, String>, Failure> {
    read_env_file(&dir.join(".env"))
}

/// Variables from an env file (missing file: none); a malformed line is a usage error naming it.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, Failure> {
    let path = path.to_path_buf();
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let iter = dotenvy::from_path_iter(&path)
        .map_err(|e| Failure::Usage(anyhow!("cannot read {}: {e}", path.display())))?;
    iter.map(|item| item.map_err(|e| Failure::Usage(anyhow!("{}: {e}", path.display()))))
        .collect()
}

/// The env file `--env` named, for every command of this process.
pub static ENV_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The key secrets use: `SECRETS_PASS` (environment, then the env file:
/// `--env FILE` or `DIR/.env`), else the identity.
pub fn secret_key(dir: &Path) -> Result<SecretKey, Failure> {
    let env_file = ENV_FILE.get().cloned().unwrap_or_else(|| dir.join(".env"));
    let pass = std::env::var("SECRETS_PASS")
        .ok()
        .or_else(|| read_env_file(&env_file).ok()?.get("SECRETS_PASS").cloned())
        .filter(|p| !p.is_empty());
    if let Some(p) = pass {
        return Ok(SecretKey::Passphrase(SecretString::from(p)));
    }
    SecretKey::load_identity(&identity_path(dir))
        .map_err(|e| Failure::Usage(anyhow!("{e} (run `nix-infra init`, or set SECRETS_PASS)")))
}

/// `nix-infra init`: creates what is missing, never overwrites.
pub fn init(dir: &Path, cluster: &str, output: Output) -> Result<(), Failure> {
    let io = |e: &dyn std::fmt::Display| Failure::Other(anyhow!("{e}"));
    std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    let mut made = Vec::new();
    let mut kept = Vec::new();
    let id = identity_path(dir);
    if id.exists() {
        kept.push("keys/age.key");
    } else {
        write_identity(&id).map_err(|e| io(&e))?;
        made.push("keys/age.key");
    }
    if create_ssh_key(dir, cluster)? {
        made.push("keys/id_ed25519");
    } else {
        kept.push("keys/id_ed25519");
    }
    let ca_dir = dir.join("ca");
    if ca_dir.join("root.pem").exists() {
        kept.push("ca/");
    } else {
        let key = SecretKey::load_identity(&id).map_err(|e| io(&e))?;
        Ca::init(&ca_dir, key, cluster).map_err(|e| io(&e))?;
        made.push("ca/");
    }
    std::fs::create_dir_all(dir.join("secrets")).map_err(|e| io(&e))?;
    if output == Output::Json {
        println!("{}", serde_json::json!({"created": made, "kept": kept}));
    } else {
        for m in &made {
            println!("created {m}");
        }
        for k in &kept {
            println!("kept    {k} (exists; init never overwrites)");
        }
    }
    Ok(())
}

/// `nix-infra init --example`: writes the example cluster repo's missing files.
pub fn init_example(dir: &Path, output: Output) -> Result<(), Failure> {
    let (made, kept) = crate::example::write(dir)
        .map_err(|e| Failure::Other(anyhow!("{}: {e}", dir.display())))?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::json!({"example": {"created": made, "kept": kept}})
        );
    } else {
        for m in &made {
            println!("created {m}");
        }
        for k in &kept {
            println!("kept    {k} (exists)");
        }
    }
    Ok(())
}

/// `nix-infra ssh-key …`: the cluster's key, locally and at the provider.
pub async fn ssh_key(global: &crate::args::Global, cmd: SshKeyCommand) -> Result<(), Failure> {
    use tasks::provider::Provider;
    let c = crate::lifecycle::ClusterDir::open(global)?;
    let public = c.dir.join("keys").join("id_ed25519.pub");
    let say = |text: String, json: serde_json::Value| {
        if global.output == Output::Json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    };
    let key_name = format!("nix-infra-{}", c.name);
    match cmd {
        SshKeyCommand::Create => {
            let made = create_ssh_key(&c.dir, &c.name)?;
            let what = if made { "created" } else { "kept (exists)" };
            say(
                format!("{what} keys/id_ed25519"),
                serde_json::json!({"created": made}),
            );
        }
        SshKeyCommand::Add => {
            let text = std::fs::read_to_string(&public).map_err(|e| {
                Failure::Usage(anyhow!(
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
                serde_json::json!({"name": k.name, "id": k.id, "fingerprint": k.fingerprint}),
            );
        }
        SshKeyCommand::Remove => {
            let removed = c
                .provider()?
                .delete_ssh_key(&key_name)
                .await
                .map_err(|e| Failure::Other(e.into()))?;
            let what = if removed { "removed" } else { "not found:" };
            say(
                format!("{what} ssh key {key_name}"),
                serde_json::json!({"removed": removed}),
            );
        }
    }
    Ok(())
}

/// Creates `keys/id_ed25519` unless it exists; whether it did.
pub fn create_ssh_key(dir: &Path, cluster: &str) -> Result<bool, Failure> {
    let ssh = dir.join("keys").join("id_ed25519");
    if ssh.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir.join("keys")).map_err(|e| Failure::Other(e.into()))?;
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("nix-infra@{cluster}"),
            "-f",
        ])
        .arg(&ssh)
        .status()
        .map_err(|e| Failure::Other(anyhow!("ssh-keygen: {e}")))?;
    if !status.success() {
        return Err(Failure::Other(anyhow!("ssh-keygen failed")));
    }
    Ok(true)
}

/// The `secret.rotate` run of `secrets rotate`.
pub fn rotate_run(
    global: &crate::args::Global,
    name: &str,
    bytes: usize,
    from_action: Option<String>,
    action_args: Vec<String>,
) -> Result<crate::prepare::Prepared, Failure> {
    let c = crate::lifecycle::ClusterDir::open(global)?;
    let store = SecretStore::new(c.dir.join("secrets"), secret_key(&c.dir)?);
    let info = store.info(name).map_err(|e| Failure::Usage(e.into()))?;
    if info.current.is_none() {
        return Err(Failure::Usage(anyhow!(
            "no secret named {name} to rotate (store it first: `nix-infra secrets store --name {name}`)"
        )));
    }
    let mut args = serde_json::json!({ "secret": name });
    match from_action {
        Some(spec) => {
            let (app, node) = spec
                .split_once('@')
                .ok_or_else(|| Failure::Usage(anyhow!("--from-action {spec}: give APP@NODE")))?;
            args["from_action"] =
                serde_json::json!({ "app": app, "node": node, "args": action_args });
        }
        None => args["bytes"] = serde_json::json!(bytes),
    }
    let mut input =
        serde_json::json!({ "cluster": c.name, "dir": c.dir, "nodes": [], "args": args });
    if let Some(f) = &c.env_file {
        input["env_file"] = serde_json::json!(f);
    }
    c.provider()?;
    Ok(crate::prepare::Prepared {
        workflow: "secret.rotate",
        input,
        run_secret: None,
    })
}

/// `nix-infra secrets …`.
pub fn secrets(dir: &Path, cmd: SecretsCommand, output: Output) -> Result<(), Failure> {
    let store = SecretStore::new(dir.join("secrets"), secret_key(dir)?);
    let fail = |e: tasks::secrets::SecretError| match e {
        tasks::secrets::SecretError::Io(_) => Failure::Other(e.into()),
        other => Failure::Usage(other.into()),
    };
    match cmd {
        SecretsCommand::Rotate { .. } => {
            return Err(Failure::Usage(anyhow!("`secrets rotate` starts a run")));
        }
        SecretsCommand::Store {
            name,
            secret,
            secret_file,
        } => {
            let value = match (secret, secret_file) {
                (Some(s), None) => {
                    eprintln!(
                        "warning: --secret is visible to other users in the process list; prefer --secret-file or stdin"
                    );
                    s.into_bytes()
                }
                (None, Some(f)) => std::fs::read(&f)
                    .map_err(|e| Failure::Usage(anyhow!("cannot read {}: {e}", f.display())))?,
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
                return Err(Failure::Usage(anyhow!(
                    "the secret is empty; nothing stored"
                )));
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
    }
    Ok(())
}
