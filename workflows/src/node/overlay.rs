//! Which overlay network a cluster's flannel uses, so that every subnet
//! nix-infra reserves is one that flannel on the nodes would accept.
//!
//! In order:
//! 1. `OVERLAY_NETWORK` (with `OVERLAY_SUBNET_LEN`, `OVERLAY_SUBNET_MIN`,
//!    `OVERLAY_SUBNET_MAX`) from the environment or the env file;
//! 2. the literal options of the repo's flannel module (the files under
//!    `modules/` and `node_types/` that mention flannel): `network`,
//!    `subnetLen`, `subnetMin`, `subnetMax`, as nixpkgs' `services.flannel`
//!    names them;
//! 3. nix-infra's default, `10.100.0.0/16` in `/24`s; also when the repo's
//!    modules take the network from nix-infra (`[%%overlayNetwork%%]`, as
//!    `init --example` writes them).
//!
//! A flannel module that sets its network in a way this cannot read (not a
//! string literal) is refused, asking for `OVERLAY_NETWORK`: a constant of
//! ours that the repo contradicts would make every rendered address wrong.

use crate::cluster::Cluster;
use std::path::{Path, PathBuf};
use tasks::registry::OverlayNetwork;

/// The options read from one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    network: Option<String>,
    subnet_len: Option<String>,
    subnet_min: Option<String>,
    subnet_max: Option<String>,
}

/// The cluster's overlay network (see the module docs).
pub fn overlay_network(c: &Cluster) -> Result<OverlayNetwork, String> {
    if let Some(network) = c.var("OVERLAY_NETWORK") {
        let len = match c.var("OVERLAY_SUBNET_LEN") {
            Some(l) => l
                .trim()
                .parse()
                .map_err(|_| format!("OVERLAY_SUBNET_LEN `{l}` is not a number"))?,
            None => 24,
        };
        let (min, max) = (c.var("OVERLAY_SUBNET_MIN"), c.var("OVERLAY_SUBNET_MAX"));
        return OverlayNetwork::new(&network, len, min.as_deref(), max.as_deref())
            .map_err(|e| format!("{e} (OVERLAY_NETWORK in {})", c.env_path().display()));
    }
    let mut found: Option<(PathBuf, Options)> = None;
    let files = flannel_files(&c.dir);
    if uses_our_network(&c.dir) {
        // The repo takes the network from nix-infra (`[%%overlayNetwork%%]`).
        return Ok(OverlayNetwork::default());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let opts = read_options(&text).map_err(|what| {
            format!(
                "{}: flannel's {what} is not a literal nix-infra can read; set OVERLAY_NETWORK \
                 (and OVERLAY_SUBNET_LEN, OVERLAY_SUBNET_MIN, OVERLAY_SUBNET_MAX) in the env file",
                file.display()
            )
        })?;
        if opts.network.is_none() {
            continue;
        }
        match &found {
            Some((other, o)) if *o != opts => {
                return Err(format!(
                    "{} and {} set different flannel networks; set OVERLAY_NETWORK in the env file",
                    other.display(),
                    file.display()
                ));
            }
            Some(_) => {}
            None => found = Some((file, opts)),
        }
    }
    let Some((file, o)) = found else {
        return Ok(OverlayNetwork::default());
    };
    let len = match &o.subnet_len {
        Some(l) => l
            .parse()
            .map_err(|_| format!("{}: subnetLen `{l}` is not a number", file.display()))?,
        None => 24,
    };
    let network = o.network.unwrap_or_default();
    OverlayNetwork::new(
        &network,
        len,
        o.subnet_min.as_deref(),
        o.subnet_max.as_deref(),
    )
    .map_err(|e| format!("{}: {e}", file.display()))
}

/// Whether a node type or module of the repo takes `[%%overlayNetwork%%]`
/// (nix-infra's own layout: the network is the one nix-infra states).
fn uses_our_network(dir: &Path) -> bool {
    let mut todo = vec![
        dir.join("modules"),
        dir.join("node_types"),
        dir.join("nodes"),
    ];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read_to_string(&p).is_ok_and(|t| t.contains("[%%overlayNetwork%%]"))
            {
                return true;
            }
        }
    }
    false
}

/// `.nix` files under `modules/` and `node_types/` that mention flannel.
fn flannel_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.join("modules"), dir.join("node_types")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "nix")
                && std::fs::read_to_string(&p).is_ok_and(|t| t.contains("flannel"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The literal flannel options of a file; `Err(option)` for one that is set
/// to something else than a literal.
fn read_options(text: &str) -> Result<Options, &'static str> {
    Ok(Options {
        network: literal(text, "network")?,
        subnet_len: literal(text, "subnetLen")?,
        subnet_min: literal(text, "subnetMin")?,
        subnet_max: literal(text, "subnetMax")?,
    })
}

/// The value of `name = "…";` (or `name = 24;`) in `text`, if it is set.
fn literal(text: &str, name: &'static str) -> Result<Option<String>, &'static str> {
    for (at, _) in text.match_indices(name) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            continue;
        }
        let rest = text[at + name.len()..].trim_start();
        let Some(value) = rest.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        if let Some(quoted) = value.strip_prefix('"') {
            let end = quoted.find('"').ok_or(name)?;
            let v = &quoted[..end];
            if v.contains("${") {
                return Err(name);
            }
            return Ok(Some(v.to_string()));
        }
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && value[digits.len()..].trim_start().starts_with(';') {
            return Ok(Some(digits));
        }
        return Err(name);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(flannel: &str, env: &str) -> (tempfile::TempDir, Cluster) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("modules")).unwrap();
        std::fs::write(d.path().join("modules/flannel.nix"), flannel).unwrap();
        std::fs::write(d.path().join(".env"), env).unwrap();
        let c = Cluster::open(d.path(), None).unwrap();
        (d, c)
    }

    #[test]
    fn the_repos_flannel_module_sets_the_network() {
        let (_d, c) = repo(
            "{ config, ... }: { services.flannel = {\n  enable = true;\n  network = \"10.0.0.0/8\";\n  \
             subnetMin = \"10.10.0.0\";\n  subnetMax = \"10.99.0.0\";\n  backend = { Type = \"wireguard\"; };\n}; }\n",
            "",
        );
        let net = overlay_network(&c).unwrap();
        assert_eq!(net.cidr(), "10.0.0.0/8");
        assert_eq!(net.subnet_len, 24);
        assert_eq!(net.subnet_min.to_string(), "10.10.0.0");
        assert_eq!(net.subnet_max.to_string(), "10.99.0.0");
    }

    #[test]
    fn the_env_wins_and_unreadable_modules_are_refused() {
        let (_d, c) = repo(
            "{ cfg, ... }: { services.flannel.network = cfg.network; }",
            "OVERLAY_NETWORK=172.16.0.0/12\nOVERLAY_SUBNET_LEN=20\n",
        );
        let net = overlay_network(&c).unwrap();
        assert_eq!((net.cidr(), net.subnet_len), ("172.16.0.0/12".into(), 20));
        let (_d, c) = repo(
            "{ cfg, ... }: { services.flannel.network = cfg.network; }",
            "",
        );
        let e = overlay_network(&c).unwrap_err();
        assert!(
            e.contains("flannel.nix") && e.contains("OVERLAY_NETWORK"),
            "{e}"
        );
        let (_d, c) = repo("# no flannel options here, only the word flannel\n{ }", "");
        assert_eq!(overlay_network(&c).unwrap(), OverlayNetwork::default());
    }
}
