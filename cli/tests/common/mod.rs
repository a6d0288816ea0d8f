//! What the cluster CLI tests share: the binary, a sandbox guard, the fake cloud's servers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tasks::provider::{Hetzner, Provider};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

/// `nix-infra -d DIR` with no state or credentials inherited from the caller.
pub fn cli(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DATABASE_URL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .env_remove("SECRETS_PASS")
        .env_remove("ETCD_ENDPOINTS")
        .arg("-d")
        .arg(dir)
        .args(["--lease-ttl", "2"]);
    c
}

/// Stops the directory's sandbox (and its nodes) when dropped.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = cli(&self.0).args(["sandbox", "down"]).output();
    }
}

/// Runs a command, asserting it succeeded; returns its stdout.
pub fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The variables of `DIR/.env`.
pub fn env(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join(".env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The cluster's name: its directory's name.
pub fn cluster_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// (node, ipv4) of every server the sandbox holds for the cluster, sorted by node.
pub async fn servers(dir: &Path) -> Vec<(String, String)> {
    let env = env(dir);
    let p = Hetzner::new(&env["HCLOUD_ENDPOINT"], &env["HCLOUD_TOKEN"]).unwrap();
    let mut out: Vec<_> = p
        .list_servers(&cluster_name(dir))
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.ipv4.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// `runs show ID --output json`.
pub fn show(dir: &Path, id: &str) -> serde_json::Value {
    let out = cli(dir)
        .args(["runs", "show", id, "--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `c`, kills it with SIGKILL as soon as a line of its stderr contains `marker`.
pub fn kill_9_at(c: &mut Command, marker: &str) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().contains(marker) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
