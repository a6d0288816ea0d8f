//! Making a cluster repo's own material: the age identity, the SSH key, the CA.
//!
//! Layout: `keys/age.key` (the cluster identity), `keys/id_ed25519` (the SSH
//! key), `ca/` (root and intermediate CA, node certificates), `secrets/`.
//! Nothing that exists is ever overwritten, so running it again is safe.

use crate::cluster::ClusterError;
use std::path::Path;
use tasks::ca::Ca;
use tasks::secrets::{SecretKey, write_identity};

/// What [`init`] made and what it found already there.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Paths created, relative to the repo.
    pub made: Vec<&'static str>,
    /// Paths that existed and were kept.
    pub kept: Vec<&'static str>,
}

fn io(what: &Path, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(format!("{}: {e}", what.display()))
}

/// Creates what is missing of `keys/`, `ca/` and `secrets/` under `dir`,
/// for the cluster called `cluster`.
pub fn init(dir: &Path, cluster: &str) -> Result<InitReport, ClusterError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut report = InitReport::default();
    let id = dir.join("keys").join("age.key");
    if id.exists() {
        report.kept.push("keys/age.key");
    } else {
        write_identity(&id).map_err(|e| io(&id, e))?;
        report.made.push("keys/age.key");
    }
    if create_ssh_key(dir, cluster)? {
        report.made.push("keys/id_ed25519");
    } else {
        report.kept.push("keys/id_ed25519");
    }
    let ca_dir = dir.join("ca");
    if ca_dir.join("root.pem").exists() {
        report.kept.push("ca/");
    } else {
        let key = SecretKey::load_identity(&id).map_err(|e| io(&id, e))?;
        Ca::init(&ca_dir, key, cluster).map_err(|e| io(&ca_dir, e))?;
        report.made.push("ca/");
    }
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| io(&secrets, e))?;
    Ok(report)
}

/// Creates `keys/id_ed25519` (ed25519, no passphrase) unless it exists; whether it did.
pub fn create_ssh_key(dir: &Path, cluster: &str) -> Result<bool, ClusterError> {
    let ssh = dir.join("keys").join("id_ed25519");
    if ssh.exists() {
        return Ok(false);
    }
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| io(&keys, e))?;
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("nix-infra@{cluster}"))
        .arg("-f")
        .arg(&ssh)
        .status()
        .map_err(|e| ClusterError::Unavailable(format!("ssh-keygen: {e}")))?;
    if !status.success() {
        return Err(ClusterError::Unavailable(format!(
            "ssh-keygen failed ({status}) making {}",
            ssh.display()
        )));
    }
    Ok(true)
}

/// The secret the example repo's `hello` app reads (`/root/secrets/hello-greeting`).
pub const EXAMPLE_SECRET: &str = "hello-greeting";

/// Stores [`EXAMPLE_SECRET`] with a random value unless the cluster's store
/// already has it, so the example repo passes the checks before a run as
/// `init --example` leaves it. Whether it stored one.
pub fn store_example_secret(c: &crate::cluster::Cluster) -> Result<bool, ClusterError> {
    use age::secrecy::SecretSlice;
    let store = c.secrets()?;
    let unavailable = |e: tasks::secrets::SecretError| {
        ClusterError::Unavailable(format!("secret {EXAMPLE_SECRET}: {e}"))
    };
    if store
        .info(EXAMPLE_SECRET)
        .map_err(unavailable)?
        .current
        .is_some()
    {
        return Ok(false);
    }
    let value: [u8; 16] = rand::random();
    let text: String = value.iter().map(|b| format!("{b:02x}")).collect();
    store
        .store(EXAMPLE_SECRET, &SecretSlice::from(text.into_bytes()))
        .map_err(unavailable)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_secret_is_stored_once() {
        let d = tempfile::tempdir().unwrap();
        super::init(d.path(), "c").unwrap();
        let c = crate::cluster::Cluster::open(d.path(), None).unwrap();
        assert!(super::store_example_secret(&c).unwrap());
        let first = c.secrets().unwrap().get(super::EXAMPLE_SECRET).unwrap();
        assert!(!super::store_example_secret(&c).unwrap(), "kept");
        let again = c.secrets().unwrap().get(super::EXAMPLE_SECRET).unwrap();
        use age::secrecy::ExposeSecret;
        assert_eq!(first.expose_secret(), again.expose_secret());
        assert_eq!(first.expose_secret().len(), 32);
    }
}
