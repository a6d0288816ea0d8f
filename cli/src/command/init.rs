//! `nix-infra init`: the cluster repo's identity, SSH key and CA, and with
//! `--example` the example repo's files.

use crate::Failure;
use crate::args::{Global, Output};
use clap::Args;
use std::path::Path;

/// `nix-infra init`
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The cluster's name (labels, certificate names); default: the directory's name.
    #[arg(long)]
    pub(crate) cluster: Option<String>,
    /// Also write the example cluster repo (node_types/, nodes/, modules/,
    /// app_modules/) where those files are missing, and store its app's
    /// secret (hello-greeting, random) unless the store has it.
    #[arg(long)]
    pub(crate) example: bool,
    /// Never prompt (init asks nothing; accepted as the Dart tool did).
    #[arg(long)]
    pub(crate) batch: bool,
    /// The Dart tool's "no certificate authority": accepted; the CA is made
    /// anyway (every command needs it, and it costs nothing).
    #[arg(long)]
    pub(crate) no_cert_auth: bool,
    /// The Dart tool's key comment: not used (the key's comment is nix-infra-<cluster>).
    #[arg(long, value_name = "EMAIL")]
    pub(crate) ssh_email: Option<String>,
}

/// Runs `init`.
pub fn run(global: &Global, args: InitArgs) -> Result<(), Failure> {
    let dir = &global.working_dir;
    let name = args.cluster.unwrap_or_else(|| {
        std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "cluster".into())
    });
    init(dir, &name, global.output)?;
    if args.example {
        example(dir, global.env_file().as_deref(), global.output)?;
    }
    Ok(())
}

/// Creates the repo's keys and CA where missing, and says what it did.
pub fn init(dir: &Path, cluster: &str, output: Output) -> Result<(), Failure> {
    let r = workflows::init::init(dir, cluster)?;
    if output == Output::Json {
        println!("{}", serde_json::json!({"created": r.made, "kept": r.kept}));
        return Ok(());
    }
    for m in &r.made {
        println!("created {m}");
    }
    for k in &r.kept {
        println!("kept    {k} (exists; init never overwrites)");
    }
    Ok(())
}

/// Writes the example cluster repo's missing files and stores its app's
/// secret (random) unless the store has it, so `cluster up` can start.
pub fn example(dir: &Path, env_file: Option<&Path>, output: Output) -> Result<(), Failure> {
    let (made, kept) = crate::example::write(dir)
        .map_err(|e| Failure::other(format!("{}: {e}", dir.display())))?;
    let cluster = workflows::cluster::Cluster::open(dir, env_file)?;
    let secret = workflows::init::EXAMPLE_SECRET;
    let stored = workflows::init::store_example_secret(&cluster)?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::json!({"example": {"created": made, "kept": kept, "stored_secret": stored.then_some(secret)}})
        );
        return Ok(());
    }
    for m in &made {
        println!("created {m}");
    }
    for k in &kept {
        println!("kept    {k} (exists)");
    }
    if stored {
        println!("stored  secret {secret} (random; `nix-infra secrets get --name {secret}`)");
    }
    Ok(())
}
