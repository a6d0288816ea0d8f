//! The installer the sandbox serves: a stand-in for nixos-infect, at
//! [`PATH`] on the cloud's own address, with its sha256.
//!
//! A provision run fetches it on the node, checks the hash and runs it as it
//! would run the real nixos-infect on Hetzner; the sandbox differs from a real
//! run only in that URL, that hash and the API endpoint. The script carries
//! the NixOS tool stand-ins ([`NIXOS_STANDINS`]) in itself (the node fetches
//! one file, as a real node does) and stages them for the next boot.

use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Where the cloud serves the installer (outside `/v1`, without a token,
/// like a raw file on GitHub).
pub const PATH: &str = "/installer/nixos-infect";

/// The NixOS tools the installer brings: (name, script).
pub const NIXOS_STANDINS: [(&str, &str); 4] = [
    ("nixos-rebuild", include_str!("standins/nixos-rebuild")),
    ("nixos-version", include_str!("standins/nixos-version")),
    (
        "nixos-eval-config.nix",
        include_str!("standins/nixos-eval-config.nix"),
    ),
    (
        "nix-collect-garbage",
        include_str!("standins/nix-collect-garbage"),
    ),
];

/// Ends each embedded tool's here-document.
const DELIMITER: &str = "NIX_INFRA_STANDIN_EOF";

static SCRIPT: LazyLock<String> = LazyLock::new(|| {
    let mut tools = String::new();
    for (name, body) in NIXOS_STANDINS {
        assert!(!body.contains(DELIMITER), "{name} contains the delimiter");
        let body = if body.ends_with('\n') {
            body.to_string()
        } else {
            format!("{body}\n")
        };
        tools.push_str(&format!(
            "emit \"$system/bin/{name}\" << '{DELIMITER}'\n{body}{DELIMITER}\n"
        ));
    }
    let template = include_str!("standins/nixos-infect");
    assert!(template.contains("  # @NIXOS_TOOLS@\n"));
    template.replace("  # @NIXOS_TOOLS@\n", &tools)
});

static SHA256: LazyLock<String> = LazyLock::new(|| {
    Sha256::digest(SCRIPT.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
});

/// The installer script, as served.
pub fn script() -> &'static str {
    &SCRIPT
}

/// Its sha256, in hex, as `NIXOS_INFECT_SHA256` takes it.
pub fn sha256() -> &'static str {
    &SHA256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_carries_every_tool_and_its_hash_is_stable() {
        let s = script();
        assert!(s.starts_with("#!/usr/bin/env bash\n"));
        for (name, _) in NIXOS_STANDINS {
            assert!(s.contains(&format!("\"$system/bin/{name}\"")), "{name}");
        }
        assert!(!s.contains("@NIXOS_TOOLS@"));
        assert_eq!(sha256().len(), 64);
        assert_eq!(sha256(), sha256());
    }
}
