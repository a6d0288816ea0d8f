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
    /// Paths created (or extended), relative to the repo.
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
    let repo = crate::cluster::Cluster::open(dir, None)?.named(cluster);
    let key = repo.ssh_key();
    let dart_key = !key.private.starts_with(repo.dir.join("keys"));
    match (dart_key, make_key(&key.private, cluster)?) {
        (true, false) => report
            .kept
            .push("ssh/$SSH_KEY (the Dart nix-infra's SSH key: nix-infra logs in with it)"),
        (true, true) => report
            .made
            .push("ssh/$SSH_KEY (SSH_KEY names it, as the Dart tool does)"),
        (false, true) => report.made.push("keys/id_ed25519"),
        (false, false) => report.kept.push("keys/id_ed25519"),
    }
    let ca_dir = dir.join("ca");
    if tasks::dart_ca::DartCa::find(&ca_dir).is_some() {
        report
            .kept
            .push("ca/ (the Dart nix-infra's CA: nix-infra issues from its intermediate, with INTERMEDIATE_CA_PASS)");
    } else if ca_dir.join("root.pem").exists() {
        report.kept.push("ca/");
    } else if ca_dir.exists() && std::fs::read_dir(&ca_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ClusterError::Refused(format!(
            "{} holds files that are no CA nix-infra knows: init writes no CA into it (move them, or remove the folder)",
            ca_dir.display()
        )));
    } else {
        let key = SecretKey::load_identity(&id).map_err(|e| io(&id, e))?;
        Ca::init(&ca_dir, key, cluster).map_err(|e| io(&ca_dir, e))?;
        report.made.push("ca/");
    }
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| io(&secrets, e))?;
    match gitignore(dir)? {
        true => report.made.push(".gitignore (keys, secrets, state)"),
        false => report.kept.push(".gitignore"),
    }
    Ok(report)
}

/// What `.gitignore` must cover: the paths that hold keys, secrets and
/// state (ours, and the Dart nix-infra's `ssh/` and `ca/`).
pub const IGNORED: [&str; 6] = [".env", "keys/", "ssh/", "ca/", "secrets/", ".nix-infra/"];

/// Writes `.gitignore`, or appends to it the entries of [`IGNORED`] it
/// lacks (a line ignoring the path already, with or without its slash, counts).
/// Whether it changed anything.
pub fn gitignore(dir: &Path) -> Result<bool, ClusterError> {
    let path = dir.join(".gitignore");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&path, e)),
    };
    let has = |entry: &str| {
        let bare = entry.trim_end_matches('/');
        text.lines().map(str::trim).any(|l| {
            let l = l
                .trim_start_matches('/')
                .trim_end_matches("/*")
                .trim_end_matches('/');
            l == bare
        })
    };
    let missing: Vec<&str> = IGNORED.iter().copied().filter(|e| !has(e)).collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let mut out = text.clone();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# nix-infra: keys, secrets and local state\n");
    for m in missing {
        out.push_str(m);
        out.push('\n');
    }
    std::fs::write(&path, out).map_err(|e| io(&path, e))?;
    Ok(true)
}

/// Creates `keys/id_ed25519` (ed25519, no passphrase) unless it exists; whether it did.
pub fn create_ssh_key(dir: &Path, cluster: &str) -> Result<bool, ClusterError> {
    make_key(&dir.join("keys").join("id_ed25519"), cluster)
}

/// Creates the SSH key `ssh` (ed25519, no passphrase) unless it exists;
/// whether it did.
pub fn make_key(ssh: &Path, cluster: &str) -> Result<bool, ClusterError> {
    if ssh.exists() {
        return Ok(false);
    }
    let keys = ssh.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(keys).map_err(|e| io(keys, e))?;
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("nix-infra@{cluster}"))
        .arg("-f")
        .arg(ssh)
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
    fn gitignore_is_written_or_extended_never_duplicated() {
        let d = tempfile::tempdir().unwrap();
        // A Dart template's .gitignore covers some already, in its own spelling.
        std::fs::write(
            d.path().join(".gitignore"),
            ".env\nsecrets/*\nssh/*\nca/*\nbuild/",
        )
        .unwrap();
        assert!(super::gitignore(d.path()).unwrap());
        let text = std::fs::read_to_string(d.path().join(".gitignore")).unwrap();
        assert_eq!(
            text,
            ".env\nsecrets/*\nssh/*\nca/*\nbuild/\n# nix-infra: keys, secrets and local state\nkeys/\n.nix-infra/\n"
        );
        assert!(!super::gitignore(d.path()).unwrap(), "nothing left to add");
        let fresh = tempfile::tempdir().unwrap();
        assert!(super::gitignore(fresh.path()).unwrap());
        let text = std::fs::read_to_string(fresh.path().join(".gitignore")).unwrap();
        for entry in super::IGNORED {
            assert!(text.lines().any(|l| l == entry), "{entry}: {text}");
        }
    }

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
