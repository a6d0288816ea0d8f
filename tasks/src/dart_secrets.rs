//! The Dart nix-infra's secrets: flat files `secrets/<name>`, written by
//! `openssl enc -pbkdf2 -a` without a cipher, so they hold the value in
//! base64 only, readable by anyone who can read the file. [`import`] moves
//! them into the age store and leaves no plaintext or base64 copy behind.
//!
//! Crash-safe: a file is first renamed to `secrets/.dart-import-<name>`
//! (so the store can make its `secrets/<name>/` folder), then stored, then
//! removed; an import that was cut short picks the renamed file up again.

use crate::secrets::{SecretError, SecretStore, check_name};
use age::secrecy::SecretSlice;
use base64::Engine;
use std::path::{Path, PathBuf};

/// Where a file waits between its rename and its removal.
const PENDING: &str = ".dart-import-";

/// One secret [`import`] moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// Its name.
    pub name: String,
    /// The version it got in the age store.
    pub version: u32,
}

/// The Dart tool's secrets in `dir` (the store's folder): regular files
/// with a secret's name, and imports cut short.
pub fn flat_secrets(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            // Hidden files (`.gitkeep`, `.DS_Store`) are no secrets; an
            // import cut short is.
            let name = match name.strip_prefix(PENDING) {
                Some(n) => n.to_string(),
                None if name.starts_with('.') => return None,
                None => name,
            };
            check_name(&name).ok().map(|_| name)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A flat file's value: its base64 decoded, one trailing newline dropped
/// (the Dart tool's reader drops it too).
pub fn decode(name: &str, text: &[u8]) -> Result<SecretSlice<u8>, SecretError> {
    let b64: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut value = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|_| {
            SecretError::Io(format!(
                "secrets/{name} is not base64 as the Dart nix-infra wrote it; store it again with \
                 `nix-infra secrets store --name {name}`"
            ))
        })?;
    if value.starts_with(b"Salted__") {
        return Err(SecretError::Io(format!(
            "secrets/{name} is encrypted by openssl (a cipher was given); decrypt it with \
             `openssl enc -d -a -pbkdf2 -in secrets/{name}` and store it with \
             `nix-infra secrets store --name {name}`"
        )));
    }
    if value.ends_with(b"\n") {
        value.pop();
    }
    Ok(SecretSlice::from(value))
}

/// Moves every Dart secret of the store's folder into the store: decoded,
/// encrypted, and the flat file removed. A secret that cannot be decoded
/// stops the import there, naming it; those before it are moved.
pub fn import(store: &SecretStore) -> Result<Vec<Imported>, SecretError> {
    let dir = store.dir().to_path_buf();
    let mut out = Vec::new();
    for name in flat_secrets(&dir) {
        let (flat, pending) = (dir.join(&name), dir.join(format!("{PENDING}{name}")));
        // An import cut short first; then the flat file, which is newer if
        // both are there (the Dart tool wrote it after).
        if pending.is_file() {
            out.push(import_one(store, &name, &pending)?);
        }
        if flat.is_file() {
            std::fs::rename(&flat, &pending).map_err(|e| io(&flat, e))?;
            out.push(import_one(store, &name, &pending)?);
        }
    }
    Ok(out)
}

/// Stores the value of the renamed file `pending` as `name`, then removes it.
fn import_one(store: &SecretStore, name: &str, pending: &PathBuf) -> Result<Imported, SecretError> {
    let value = decode(name, &read(pending)?)?;
    let version = store.store(name, &value)?;
    std::fs::remove_file(pending).map_err(|e| io(pending, e))?;
    Ok(Imported {
        name: name.to_string(),
        version,
    })
}

fn read(path: &PathBuf) -> Result<Vec<u8>, SecretError> {
    std::fs::read(path).map_err(|e| io(path, e))
}

fn io(path: &Path, e: std::io::Error) -> SecretError {
    SecretError::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretKey;
    use age::secrecy::ExposeSecret;

    #[test]
    fn dart_files_move_into_the_store_and_leave_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("secrets");
        std::fs::create_dir_all(&dir).unwrap();
        // What `openssl enc -pbkdf2 -a` (no cipher) wrote for two values;
        // the long one wrapped at 64 columns, as openssl wraps it.
        let long = "x".repeat(70);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&long);
        std::fs::write(dir.join("api-key"), "aGVsbG8gc2VjcmV0\n").unwrap();
        std::fs::write(
            dir.join("db.password"),
            format!("{}\n{}\n", &b64[..64], &b64[64..]),
        )
        .unwrap();
        // An import cut short after its rename.
        std::fs::write(dir.join(".dart-import-netrc"), "bWFjaGluZSB4Cg==\n").unwrap();
        std::fs::write(dir.join(".gitkeep"), "").unwrap();
        let store = SecretStore::new(
            &dir,
            SecretKey::Identity(Box::new(age::x25519::Identity::generate())),
        );
        assert_eq!(flat_secrets(&dir), ["api-key", "db.password", "netrc"]);
        let moved = import(&store).unwrap();
        let names: Vec<&str> = moved.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["api-key", "db.password", "netrc"]);
        let get =
            |n: &str| String::from_utf8(store.get(n).unwrap().expose_secret().to_vec()).unwrap();
        assert_eq!(get("api-key"), "hello secret");
        assert_eq!(get("db.password"), long);
        assert_eq!(get("netrc"), "machine x", "one trailing newline dropped");
        // No plaintext or base64 copy is left, anywhere under secrets/.
        assert!(flat_secrets(&dir).is_empty());
        assert!(dir.join(".gitkeep").exists(), "not a secret: left alone");
        for entry in walk(&dir) {
            let bytes = std::fs::read(&entry).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for leaked in ["hello secret", "aGVsbG8gc2VjcmV0", "machine x", &b64[..20]] {
                assert!(!text.contains(leaked), "{}: {leaked}", entry.display());
            }
        }
        assert!(import(&store).unwrap().is_empty(), "nothing left to move");
    }

    #[test]
    fn what_is_not_dart_base64_is_refused_naming_the_file() {
        let e = decode("k", b"not base64 !!").unwrap_err().to_string();
        assert!(
            e.contains("secrets/k") && e.contains("secrets store --name k"),
            "{e}"
        );
        let salted = base64::engine::general_purpose::STANDARD.encode(b"Salted__12345678abc");
        let e = decode("k", salted.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("encrypted by openssl"), "{e}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
