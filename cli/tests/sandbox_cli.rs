//! `nix-infra sandbox`: a local Hetzner stand-in the ordinary tooling talks to.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;
use tasks::provider::{Hetzner, Provider, ServerSpec};

mod common;

use common::{BIN, Down, env as env_file};

/// `nix-infra -d DIR`, inheriting the caller's environment.
fn cli(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("NIX_INFRA_SANDBOX_OWNER", std::process::id().to_string())
        .arg("-d")
        .arg(dir);
    c
}

/// The JSON line `sandbox up --output json` printed.
fn sandbox_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_up_serves_hetzner_and_down_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(dir.path().to_path_buf());
    std::fs::write(dir.path().join(".env"), "SECRETS_PASS=untouched\n").unwrap();
    let out = cli(dir.path())
        .args(["sandbox", "up", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = env_file(dir.path());
    assert_eq!(env["SECRETS_PASS"], "untouched");
    let endpoint = env["HCLOUD_ENDPOINT"].clone();
    assert!(endpoint.starts_with("http://127.0.0.1:"));
    // The installer is the sandbox's: the only other difference from a real run.
    let (base, _) = endpoint.rsplit_once("/v1").unwrap();
    assert_eq!(
        env["NIXOS_INFECT_URL"],
        format!("{base}/installer/nixos-infect")
    );
    assert_eq!(env["NIXOS_INFECT_SHA256"], sandbox::installer::sha256());
    let printed = sandbox_json(&out.stdout);
    assert_eq!(printed["installer_url"], env["NIXOS_INFECT_URL"].as_str());

    // The ordinary provider code, pointed at the sandbox by the .env values.
    let p = Hetzner::new(&endpoint, &env["HCLOUD_TOKEN"])
        .unwrap()
        .with_action_poll(Duration::from_millis(50));
    let key = std::fs::read_to_string(dir.path().join("key.pub")).unwrap_or_else(|_| {
        let path = dir.path().join("key");
        assert!(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(&path)
                .status()
                .unwrap()
                .success()
        );
        std::fs::read_to_string(path.with_extension("pub")).unwrap()
    });
    p.ensure_ssh_key("sandbox", &key).await.unwrap();
    let server = p
        .create_server(&ServerSpec {
            cluster: "demo".into(),
            node: "node1".into(),
            role: "ctrl".into(),
            server_type: "cx22".into(),
            image: "debian-12".into(),
            location: None,
            ssh_key: "sandbox".into(),
            placement_group: None,
            user_data: None,
        })
        .await
        .unwrap();
    let ssh: SocketAddr = format!("{}:22", server.ipv4.unwrap()).parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&ssh, Duration::from_millis(200)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = cli(dir.path()).args(["sandbox", "up"]).output().unwrap();
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already running")
    );

    let out = cli(dir.path()).args(["sandbox", "down"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        TcpStream::connect_timeout(&ssh, Duration::from_millis(200)).is_err(),
        "its nodes stop with it"
    );
    let env = env_file(dir.path());
    assert!(!env.contains_key("HCLOUD_ENDPOINT") && env["SECRETS_PASS"] == "untouched");
    for key in ["HCLOUD_TOKEN", "NIXOS_INFECT_URL", "NIXOS_INFECT_SHA256"] {
        assert!(!env.contains_key(key), "{key} left in .env");
    }
    let status = cli(dir.path())
        .args(["sandbox", "status", "--output", "json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("\"stopped\""));
}

#[test]
fn the_demo_brings_a_cluster_up_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(dir.path().to_path_buf());
    let out = cli(dir.path()).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in ["ctrl1", "worker1", "worker2", "ingress1"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{node} missing: {stdout}"));
        assert!(line.contains(" ok ") && line.contains("127."), "{line}");
        let last = if node == "ctrl1" {
            "done (etcd)"
        } else {
            "done (register)"
        };
        assert!(line.contains(last), "{line}");
    }
    assert!(stdout.contains("runs show"));
    assert!(stdout.contains("sandbox stopped"));
    let status = cli(dir.path())
        .args(["sandbox", "status", "--output", "json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("\"stopped\""));
    let runs = cli(dir.path())
        .args(["runs", "list", "--output", "json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let workflows: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workflow"].as_str().unwrap())
        .collect();
    assert_eq!(workflows, ["node.destroy", "cluster.up"]);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "succeeded")
    );
}

/// The README's "try it free" line, as written, in a fresh directory (no
/// `-d`, nothing stored beforehand), then cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_try_it_free_line_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(dir.path().to_path_buf());
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .env("NIX_INFRA_SANDBOX_OWNER", std::process::id().to_string())
            .env_remove("DATABASE_URL")
            .env_remove("HCLOUD_TOKEN")
            .env_remove("HCLOUD_ENDPOINT")
            .env_remove("SECRETS_PASS")
            .env_remove("SECRETS_PWD")
            .env_remove("ETCD_ENDPOINTS")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    // nix-infra init --example && nix-infra sandbox up && nix-infra cluster up
    assert!(run(&["init", "--example"]).contains("stored  secret hello-greeting"));
    run(&["sandbox", "up"]);
    let up = run(&["cluster", "up"]);
    for node in ["ctrl1", "worker1", "worker2", "ingress1"] {
        let row = up.lines().find(|l| l.starts_with(node)).unwrap_or("");
        assert!(row.contains(" ok "), "{node}: {up}");
    }
    let all = "ctrl1 worker1 worker2 ingress1";
    run(&["cluster", "destroy", "--batch", "--target", all]);
    let env = env_file(dir.path());
    let p = Hetzner::new(&env["HCLOUD_ENDPOINT"], &env["HCLOUD_TOKEN"]).unwrap();
    let left = p
        .list_servers(&common::cluster_name(dir.path()))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    run(&["sandbox", "down"]);
}

#[test]
fn a_sandbox_stops_when_its_owner_dies() {
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(dir.path().to_path_buf());
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let up = cli(dir.path())
        .env("NIX_INFRA_SANDBOX_OWNER", owner.id().to_string())
        .args(["sandbox", "up"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let status = || {
        let out = cli(dir.path())
            .args(["sandbox", "status", "--output", "json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(status().contains("\"running\""), "{}", status());
    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !status().contains("\"stopped\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "still up: {}",
            status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
