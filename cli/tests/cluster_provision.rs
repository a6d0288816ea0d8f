//! `nix-infra cluster provision` on the sandbox: durable, resumable, never two servers per node.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use tasks::provider::{Hetzner, Provider};

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

fn cli(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DATABASE_URL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .arg("-d")
        .arg(dir)
        .args(["--lease-ttl", "2"]);
    c
}

struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = cli(&self.0).args(["sandbox", "down"]).output();
    }
}

async fn servers(dir: &std::path::Path) -> Vec<String> {
    let env: std::collections::BTreeMap<String, String> = std::fs::read_to_string(dir.join(".env"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let p = Hetzner::new(&env["HCLOUD_ENDPOINT"], &env["HCLOUD_TOKEN"]).unwrap();
    let cluster = std::fs::canonicalize(dir)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let mut names: Vec<String> = p
        .list_servers(&cluster)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names
}

fn show(dir: &std::path::Path, id: &str) -> serde_json::Value {
    let out = cli(dir)
        .args(["runs", "show", id, "--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_survives_kill_9_and_adopts_instead_of_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(dir.path().to_path_buf());
    assert!(
        cli(dir.path())
            .arg("init")
            .output()
            .unwrap()
            .status
            .success()
    );
    let up = cli(dir.path()).args(["sandbox", "up"]).output().unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    // Kill -9 once the first server exists.
    let mut child = cli(dir.path())
        .args([
            "cluster",
            "provision",
            "--target",
            "n1 n2 n3 n4",
            "--run-id",
            "prov-1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().contains("✓ create/") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(show(dir.path(), "prov-1")["status"], "running");

    let out = cli(dir.path())
        .args(["runs", "resume", "prov-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        servers(dir.path()).await,
        ["n1", "n2", "n3", "n4"],
        "one server per node"
    );
    let run = show(dir.path(), "prov-1");
    for s in run["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "succeeded", "{s}");
        if s["name"].as_str().unwrap().starts_with("create/") {
            let ok = s["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["status"] == "succeeded")
                .count();
            assert_eq!(ok, 1, "{s}");
        }
    }

    // Provisioning again adopts the servers and leaves NixOS alone.
    let out = cli(dir.path())
        .args([
            "cluster",
            "provision",
            "--target",
            "n1 n2",
            "--run-id",
            "prov-2",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(servers(dir.path()).await.len(), 4);
    let logs = cli(dir.path())
        .args(["runs", "logs", "prov-2", "--step", "install/n1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&logs.stdout).contains("already runs NixOS"));
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path())
        .args(["cluster", "provision", "--target", "  "])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target names no node"));
    assert!(!dir.path().join(".nix-infra").exists());
    // No token anywhere: the run fails at its first step with a clear, permanent error.
    let out = cli(dir.path())
        .args(["cluster", "provision", "--target", "n1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("HCLOUD_TOKEN is not set"), "{stdout}");
}
