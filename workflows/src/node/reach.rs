//! What keeps a node reachable, whatever the cluster repo says: the
//! generated `/etc/nixos/configuration.nix` always imports what the install
//! left (`hardware-configuration.nix`, and `networking.nix` where nixos-infect
//! wrote the provider's static addressing), keeps sshd on with root's key
//! login for the cluster's key, and pins `system.stateVersion` to the
//! installed release.
//!
//! The options are set in the generated top-level file with `lib.mkForce`
//! (priority 50), so a repo module's plain definition (priority 100) loses
//! to them. A repo module that forces the opposite too makes two forced
//! definitions that NixOS refuses to merge: the rebuild fails and the node
//! keeps the generation it runs, reachable. Only a deliberate `mkOverride`
//! below 50 could win. Root's authorized keys are a list, so ours is merged
//! with the repo's own keys rather than replacing them.

use super::{DEFAULT_CHANNEL, NodesInput};
use crate::cluster::Cluster;
use crate::domain::Role;

/// What the generated `configuration.nix` keeps, whatever the repo's modules say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    /// The cluster's public SSH key ([`Cluster::ssh_key`]), root's authorized key.
    pub root_key: String,
    /// `system.stateVersion`: the installed release (`24.11` for `nixos-24.11`).
    pub state_version: String,
}

impl Reach {
    /// The cluster's public key ([`Cluster::ssh_key`]), and the release of `channel`.
    pub fn read(c: &Cluster, channel: &str) -> Result<Reach, String> {
        let key = c.ssh_key().public_key().map_err(|e| e.to_string())?;
        Ok(Reach {
            root_key: key,
            state_version: state_version(channel),
        })
    }

    /// [`Reach::read`] for a run's cluster and channel.
    pub fn of(i: &NodesInput) -> Result<Reach, String> {
        let c = i.repo().map_err(|e| e.to_string())?;
        Reach::read(&c, &i.channel)
    }
}

/// The NixOS release of a channel: `nixos-24.11` and `nixos-24.11-small`
/// are `24.11`; a channel that names no release (`nixos-unstable`) gets the
/// default channel's.
pub fn state_version(channel: &str) -> String {
    let release = |c: &str| -> Option<String> {
        let rest = c.strip_prefix("nixos-").unwrap_or(c);
        let v: String = rest.chars().take(5).collect();
        let b = v.as_bytes();
        let ok = b.len() == 5
            && b[2] == b'.'
            && [0, 1, 3, 4].iter().all(|&k| b[k].is_ascii_digit())
            && rest[5..].chars().next().is_none_or(|c| c == '-');
        ok.then_some(v)
    };
    release(channel)
        .or_else(|| release(DEFAULT_CHANNEL))
        .unwrap_or_else(|| "24.11".into())
}

/// `s` as a Nix string literal.
pub fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The generated `/etc/nixos/configuration.nix` of `node`: the install's
/// files, `imports` (the repo's files as staged), the host name, and what
/// keeps the node reachable.
pub fn configuration(node: &str, role: Role, imports: &[&str], reach: &Reach) -> String {
    format!(
        r#"# Written by nix-infra for node {node} ({role}). Edit {node_type} and nodes/{node}.nix instead.
{{ lib, ... }}:
{{
  imports = [ ./hardware-configuration.nix {imports} ]
    # nixos-infect writes the provider's static addressing here: keep it.
    ++ (if builtins.pathExists ./networking.nix then [ ./networking.nix ] else [ ]);
  networking.hostName = {host};

  # nix-infra reaches the node over SSH as root with the cluster's key:
  # forced, so no module of the repo can turn that off.
  services.openssh.enable = lib.mkForce true;
  services.openssh.openFirewall = lib.mkForce true;
  services.openssh.settings.PermitRootLogin = lib.mkForce "prohibit-password";
  users.users.root.openssh.authorizedKeys.keys = [ {key} ];
  # The release the node was installed with.
  system.stateVersion = lib.mkForce {version};
}}
"#,
        node_type = role.node_type_file(),
        imports = imports.join(" "),
        host = nix_string(node),
        key = nix_string(&reach.root_key),
        version = nix_string(&reach.state_version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_comes_from_the_channel() {
        assert_eq!(state_version("nixos-24.11"), "24.11");
        assert_eq!(state_version("nixos-25.05-small"), "25.05");
        assert_eq!(state_version("nixos-unstable"), "24.11");
        assert_eq!(state_version("nixos-24.1x"), "24.11");
        assert_eq!(state_version("nixos-24.111"), "24.11");
    }

    #[test]
    fn strings_are_quoted_for_nix() {
        assert_eq!(nix_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(nix_string("${x} $y"), r#""\${x} $y""#);
    }
}
