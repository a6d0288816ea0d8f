//! `nix-infra-testcloud` as users start it: prints its endpoint, serves, cleans up on SIGTERM.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra-testcloud");

/// A started `nix-infra-testcloud`, its API endpoint and installer lines.
fn start_cloud() -> (std::process::Child, String, [String; 2]) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            "t0ken",
            "--action-delay-ms",
            "50",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Then the installer, as `sandbox up` writes it into .env.
    let mut installer = [String::new(), String::new()];
    for l in &mut installer {
        out.read_line(l).unwrap();
    }
    let endpoint = line
        .trim()
        .strip_prefix("HCLOUD_ENDPOINT=")
        .unwrap_or_else(|| panic!("first line is not the endpoint: {line}"))
        .to_string();
    (child, endpoint, installer)
}

/// Creates server `name` and waits until its node's sshd answers.
async fn boot(endpoint: &str, name: &str) -> SocketAddr {
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{endpoint}/servers"))
        .bearer_auth("t0ken")
        .json(&json!({"name": name, "server_type": "cx22", "image": "debian-12"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["server"]["id"].as_i64().unwrap();
    let ip: std::net::Ipv4Addr = created["server"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = http
            .get(format!("{endpoint}/servers/{id}"))
            .bearer_auth("t0ken")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["server"]["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the node never booted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let ssh = SocketAddr::from((ip, 22));
    assert!(TcpStream::connect_timeout(&ssh, Duration::from_secs(1)).is_ok());
    ssh
}

/// The state folders of nodes called `name` in the temp dir.
fn state_of(name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("nix-infra-node-{name}-"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_until_sigterm_then_stops_its_nodes() {
    let (mut child, endpoint, installer) = start_cloud();
    assert!(endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with("/v1"));
    let base = endpoint.trim_end_matches("/v1");
    assert_eq!(
        installer[0].trim(),
        format!("NIXOS_INFECT_URL={base}/installer/nixos-infect")
    );
    assert_eq!(
        installer[1].trim(),
        format!("NIXOS_INFECT_SHA256={}", sandbox::installer::sha256())
    );
    let denied = reqwest::Client::new()
        .get(format!("{endpoint}/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401, "the token is required");
    let ssh = boot(&endpoint, "solo").await;
    assert_eq!(state_of("solo").len(), 1);

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        TcpStream::connect_timeout(&ssh, Duration::from_millis(200)).is_err(),
        "the node's sshd must stop with the cloud"
    );
    let left = Command::new("pgrep")
        .args(["-f", "nix-infra-node-solo-"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "node processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(state_of("solo").is_empty(), "the node's state went with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_clouds_nodes_left_is_removed_by_the_next_boot() {
    let (mut killed, endpoint, _) = start_cloud();
    let ssh = boot(&endpoint, "swept").await;
    killed.kill().unwrap();
    killed.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&ssh, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "the node outlived its cloud");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let left = state_of("swept");
    assert_eq!(left.len(), 1, "SIGKILL leaves the node's state");

    let (mut next, endpoint, _) = start_cloud();
    boot(&endpoint, "sweeper").await;
    assert!(
        !left[0].exists(),
        "the next boot removed {}",
        left[0].display()
    );
    let pid = rustix::process::Pid::from_raw(next.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    next.wait().unwrap();
    assert!(state_of("sweeper").is_empty());
}

#[test]
fn refuses_a_non_loopback_address() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0", "--token", "t", "--no-nodes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only listens on loopback"));
}
