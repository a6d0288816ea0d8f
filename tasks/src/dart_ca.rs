//! The Dart nix-infra's openssl CA (`ca/`), used as it is: running etcd
//! members trust only it, so nix-infra issues node and orchestrator
//! certificates from its intermediate rather than making a CA of its own.
//!
//! Layout (as the Dart tool's `init` made it): `ca/certs/ca.cert.pem` (root),
//! `ca/intermediate/certs/intermediate.cert.pem`, and the intermediate's key
//! `ca/intermediate/private/intermediate.key.pem`, encrypted with
//! `INTERMEDIATE_CA_PASS`. The key is opened with the `openssl` command (the
//! Dart tool needed it too), the passphrase passed in its environment, never
//! on its command line. nix-infra writes nothing under `ca/`: what it issues
//! is kept in its own folder (see [`crate::ca::Ca::load_dart`]).

use crate::ca::CaError;
use age::secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of a Dart CA under `ca`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DartCa {
    /// The root certificate.
    pub root: PathBuf,
    /// The intermediate certificate.
    pub intermediate: PathBuf,
    /// The intermediate's encrypted key.
    pub intermediate_key: PathBuf,
}

impl DartCa {
    /// The Dart CA in `ca` (the repo's `ca/` folder), if there is one.
    pub fn find(ca: &Path) -> Option<DartCa> {
        let d = DartCa {
            root: ca.join("certs/ca.cert.pem"),
            intermediate: ca.join("intermediate/certs/intermediate.cert.pem"),
            intermediate_key: ca.join("intermediate/private/intermediate.key.pem"),
        };
        (d.root.is_file() && d.intermediate.is_file() && d.intermediate_key.is_file()).then_some(d)
    }

    /// The intermediate's key, decrypted (PKCS#8 PEM), with `passphrase`.
    pub fn open_key(&self, passphrase: &SecretString) -> Result<SecretString, CaError> {
        let out = Command::new("openssl")
            .args(["pkey", "-passin", "env:NIX_INFRA_CA_PASS", "-in"])
            .arg(&self.intermediate_key)
            .env("NIX_INFRA_CA_PASS", passphrase.expose_secret())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                CaError::Cert(format!("openssl (needed for the Dart nix-infra's CA): {e}"))
            })?;
        if !out.status.success() {
            return Err(CaError::Cert(format!(
                "cannot open {} with INTERMEDIATE_CA_PASS (wrong passphrase?): {}",
                self.intermediate_key.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(SecretString::from(
            String::from_utf8_lossy(&out.stdout).to_string(),
        ))
    }
}
