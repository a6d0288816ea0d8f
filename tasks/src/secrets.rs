//! [`SecretStore`]: versioned secrets under `secrets/`, encrypted with age.
//!
//! Layout: `secrets/<name>/v<N>.age` (mode 0600, folders 0700) and
//! `secrets/<name>/state.json` (`{"current":N,"pending":M}`, no secret in it).
//! With `SECRETS_PASS` set, files use age's scrypt passphrase recipient;
//! otherwise the cluster's X25519 identity (made by `nix-infra init`).
//! A rotation stages a new version; the old one stays current until the new
//! one is confirmed deployed.

use age::secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why a secret operation failed. Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretError {
    /// No such secret (or version).
    #[error("no secret `{0}`")]
    NotFound(String),
    /// The configured key does not open the file.
    #[error(
        "cannot decrypt secret `{name}` with the configured key ({key}); check SECRETS_PASS or the cluster identity"
    )]
    WrongKey {
        /// The secret.
        name: String,
        /// Which kind of key was tried.
        key: &'static str,
    },
    /// A name outside `[A-Za-z0-9._-]`.
    #[error("invalid secret name `{0}`: use 1-64 characters from A-Z a-z 0-9 . _ -")]
    BadName(String),
    /// Nothing is staged to confirm.
    #[error("secret `{0}` has no staged version")]
    NothingStaged(String),
    /// File trouble.
    #[error("{0}")]
    Io(String),
}

/// What encrypts and decrypts secrets.
pub enum SecretKey {
    /// A passphrase (SECRETS_PASS), through age's scrypt recipient.
    Passphrase(SecretString),
    /// The cluster's X25519 identity.
    Identity(Box<age::x25519::Identity>),
}

impl SecretKey {
    fn kind(&self) -> &'static str {
        match self {
            SecretKey::Passphrase(_) => "SECRETS_PASS passphrase",
            SecretKey::Identity(_) => "cluster identity",
        }
    }

    /// Reads an identity file written by [`write_identity`].
    pub fn load_identity(path: &Path) -> Result<SecretKey, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SecretError::Io(format!(
                "cannot read the cluster identity {}: {e}",
                path.display()
            ))
        })?;
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| SecretError::Io(format!("{} holds no age identity", path.display())))?;
        let id = age::x25519::Identity::from_str(line.trim())
            .map_err(|e| SecretError::Io(format!("{}: {e}", path.display())))?;
        Ok(SecretKey::Identity(Box::new(id)))
    }

    /// Encrypts `plain` for this key.
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let io = |e: &dyn std::fmt::Display| SecretError::Io(format!("encryption failed: {e}"));
        let enc = match self {
            SecretKey::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
            SecretKey::Identity(id) => {
                let r = id.to_public();
                age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                    .map_err(|e| io(&e))?
            }
        };
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).map_err(|e| io(&e))?;
        w.write_all(plain).map_err(|e| io(&e))?;
        w.finish().map_err(|e| io(&e))?;
        Ok(out)
    }

    /// Decrypts `cipher`; `None` when this key does not open it.
    pub fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let dec = age::Decryptor::new_buffered(cipher).ok()?;
        let mut reader = match self {
            SecretKey::Passphrase(p) => {
                let mut id = age::scrypt::Identity::new(p.clone());
                id.set_max_work_factor(22);
                dec.decrypt(std::iter::once(&id as &dyn age::Identity))
                    .ok()?
            }
            SecretKey::Identity(id) => dec
                .decrypt(std::iter::once(id.as_ref() as &dyn age::Identity))
                .ok()?,
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).ok()?;
        Some(out)
    }
}

/// Creates a new X25519 identity file (mode 0600); refuses to overwrite one.
pub fn write_identity(path: &Path) -> Result<String, SecretError> {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# nix-infra cluster identity: decrypts the cluster's secrets and CA keys\n# public key: {public}\n{}\n",
        id.to_string().expose_secret()
    );
    write_new(path, text.as_bytes())?;
    Ok(public)
}

/// Writes a file that must not exist yet (0600, parents 0700).
pub fn write_new(path: &Path, data: &[u8]) -> Result<(), SecretError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        make_private_dir(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SecretError::Io(format!("{}: {e}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| SecretError::Io(format!("{}: {e}", path.display())))
}

/// Replaces a file atomically (temp file, then rename), mode 0600.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    make_private_dir(dir)?;
    let io = |e: std::io::Error| SecretError::Io(format!("{}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn make_private_dir(dir: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |e: std::io::Error| SecretError::Io(format!("{}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    current: Option<u32>,
    pending: Option<u32>,
}

/// A secret's versions, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// The version in use.
    pub current: Option<u32>,
    /// A staged version awaiting confirmation.
    pub pending: Option<u32>,
}

/// The cluster's secrets.
pub struct SecretStore {
    dir: PathBuf,
    key: SecretKey,
}

/// Checks a secret name: 1-64 characters from A-Z a-z 0-9 . _ -.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SecretError::BadName(name.into()))
    }
}

impl SecretStore {
    /// The store in `dir` (usually `<cluster>/secrets`), using `key`.
    pub fn new(dir: impl Into<PathBuf>, key: SecretKey) -> SecretStore {
        SecretStore {
            dir: dir.into(),
            key,
        }
    }

    /// The folder it keeps its secrets in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self, name: &str) -> Result<State, SecretError> {
        match std::fs::read(self.dir.join(name).join("state.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| SecretError::Io(format!("secret `{name}` state: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(SecretError::Io(e.to_string())),
        }
    }

    fn save_state(&self, name: &str, s: State) -> Result<(), SecretError> {
        let json = serde_json::to_vec(&s).map_err(|e| SecretError::Io(e.to_string()))?;
        write_atomic(&self.dir.join(name).join("state.json"), &json)
    }

    fn version_path(&self, name: &str, v: u32) -> PathBuf {
        self.dir.join(name).join(format!("v{v}.age"))
    }

    fn write_version(&self, name: &str, value: &SecretSlice<u8>) -> Result<u32, SecretError> {
        let s = self.state(name)?;
        let v = s.current.max(s.pending).unwrap_or(0) + 1;
        let cipher = self.key.encrypt(value.expose_secret())?;
        write_atomic(&self.version_path(name, v), &cipher)?;
        Ok(v)
    }

    /// Stores `value` as the new current version (no rotation); returns its version.
    pub fn store(&self, name: &str, value: &SecretSlice<u8>) -> Result<u32, SecretError> {
        check_name(name)?;
        let v = self.write_version(name, value)?;
        let old = self.state(name)?;
        self.save_state(
            name,
            State {
                current: Some(v),
                pending: None,
            },
        )?;
        for stale in [old.current, old.pending].into_iter().flatten() {
            let _ = std::fs::remove_file(self.version_path(name, stale));
        }
        Ok(v)
    }

    /// Stages `value` as the next version; the current one stays in use until [`SecretStore::confirm`].
    pub fn stage(&self, name: &str, value: &SecretSlice<u8>) -> Result<u32, SecretError> {
        check_name(name)?;
        let mut s = self.state(name)?;
        if let Some(p) = s.pending.take() {
            let _ = std::fs::remove_file(self.version_path(name, p));
        }
        let v = self.write_version(name, value)?;
        s.pending = Some(v);
        self.save_state(name, s)?;
        Ok(v)
    }

    /// Makes the staged version current and retires the previous one.
    pub fn confirm(&self, name: &str) -> Result<u32, SecretError> {
        let s = self.state(name)?;
        let v = s
            .pending
            .ok_or_else(|| SecretError::NothingStaged(name.into()))?;
        self.save_state(
            name,
            State {
                current: Some(v),
                pending: None,
            },
        )?;
        if let Some(old) = s.current {
            let _ = std::fs::remove_file(self.version_path(name, old));
        }
        Ok(v)
    }

    /// The current value.
    pub fn get(&self, name: &str) -> Result<SecretSlice<u8>, SecretError> {
        check_name(name)?;
        let v = self
            .state(name)?
            .current
            .ok_or_else(|| SecretError::NotFound(name.into()))?;
        self.get_version(name, v)
    }

    /// A specific version (current or staged).
    pub fn get_version(&self, name: &str, v: u32) -> Result<SecretSlice<u8>, SecretError> {
        let cipher = std::fs::read(self.version_path(name, v))
            .map_err(|_| SecretError::NotFound(format!("{name} v{v}")))?;
        self.key
            .decrypt(&cipher)
            .map(SecretSlice::from)
            .ok_or(SecretError::WrongKey {
                name: name.into(),
                key: self.key.kind(),
            })
    }

    /// Every secret with its versions.
    pub fn list(&self) -> Result<Vec<SecretInfo>, SecretError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(SecretError::Io(e.to_string())),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !e.path().is_dir() || check_name(&name).is_err() {
                continue;
            }
            let s = self.state(&name)?;
            out.push(SecretInfo {
                name,
                current: s.current,
                pending: s.pending,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One secret's versions.
    pub fn info(&self, name: &str) -> Result<SecretInfo, SecretError> {
        check_name(name)?;
        let s = self.state(name)?;
        Ok(SecretInfo {
            name: name.into(),
            current: s.current,
            pending: s.pending,
        })
    }

    /// Removes a secret and all its versions.
    pub fn remove(&self, name: &str) -> Result<(), SecretError> {
        check_name(name)?;
        let dir = self.dir.join(name);
        if !dir.exists() {
            return Err(SecretError::NotFound(name.into()));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| SecretError::Io(e.to_string()))
    }
}
