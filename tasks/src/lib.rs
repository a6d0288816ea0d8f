//! # tasks: the adapters that touch the world
//!
//! Plain async clients with no knowledge of the engine; workflows wrap them
//! in steps. Each one is honest about failure: errors say whether a retry can
//! help (`is_retryable`), and nothing reports success that did not happen.
//!
//! - [`provider`]: where servers come from. [`provider::Hetzner`] (the
//!   `hcloud` crate's models over reqwest/rustls) creates servers labelled for
//!   their cluster, adopting one that already exists, lists every page, waits
//!   out 429s as the headers say; [`provider::SelfHosted`] reads `servers.yaml`.
//! - [`ssh`]: [`ssh::Remote`] runs commands (exit codes checked, lines
//!   streamed), uploads files and trees, pipes secrets on stdin and forwards
//!   ports, with host keys pinned per cluster.
//! - [`install`]: NixOS over the provider's stock image: nixos-infect
//!   fetched on the node from a pinned URL, its sha256 checked there before it
//!   runs, `NO_REBOOT=1`, then a reboot that must keep the pinned host key.
//! - [`nixos`]: renders `[%%key%%]` placeholders ([`render`]), uploads
//!   `/etc/nixos`, rebuilds and verifies.
//!
//! ```text
//!   workflows ──► tasks::provider ──► Hetzner API (or servers.yaml)
//!             ──► tasks::ssh      ──► sshd on the nodes ──► tasks::nixos
//! ```
//!
//! ```
//! use std::collections::BTreeMap;
//! let vars = BTreeMap::from([("ip".to_string(), "10.0.0.1".to_string())]);
//! assert_eq!(tasks::render("addr = [%%ip%%];", &vars).unwrap(), "addr = 10.0.0.1;");
//! assert!(tasks::render("[%%ip%%] [%%gw%%]", &vars).unwrap_err().to_string().contains("gw"));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod dart_ca;
pub mod dart_secrets;
pub mod deploy;
pub mod install;
pub mod nixos;
pub mod overlay;
pub mod provider;
pub mod registry;
pub mod secrets;
pub mod ssh;
mod ssh_error;
pub mod ssh_masters;
mod ssh_pool;

use std::collections::{BTreeMap, BTreeSet};

/// A template referenced placeholders that were not supplied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing values for placeholders: {}", .0.iter().cloned().collect::<Vec<_>>().join(", "))]
pub struct MissingKeys(pub BTreeSet<String>);

/// Replaces nix-infra's `[%%key%%]` placeholders; every missing key is reported at once.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, MissingKeys> {
    let mut out = String::with_capacity(template.len());
    let mut missing = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("[%%") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        match after.find("%%]") {
            Some(end) => {
                let key = &after[..end];
                match vars.get(key) {
                    Some(v) => out.push_str(v),
                    None => {
                        missing.insert(key.to_string());
                    }
                }
                rest = &after[end + 3..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(MissingKeys(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_missing_key() {
        let vars = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(render("[%%a%%]-[%%a%%]", &vars).unwrap(), "1-1");
        let err = render("[%%b%%] [%%a%%] [%%c%%]", &vars).unwrap_err();
        assert_eq!(err.to_string(), "missing values for placeholders: b, c");
        assert_eq!(render("no [%%end", &vars).unwrap(), "no [%%end");
    }
}
