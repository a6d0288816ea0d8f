//! `cluster provision` installs NixOS as on Hetzner: the installer named in
//! `.env` (the sandbox's, here) is fetched and checked on the node, then the
//! node reboots into it with its pinned host key.

mod common;

use common::{Down, cli, ok, on_node, show};
use std::path::Path;

/// A cluster repo with a sandbox running; returns the sandbox's `.env`.
fn repo(dir: &Path) -> String {
    ok(cli(dir).arg("init"));
    ok(cli(dir).args(["sandbox", "up"]));
    std::fs::read_to_string(dir.join(".env")).unwrap()
}

/// `.env` with `key`'s line set to `value`.
fn set_env(dir: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(dir.join(".env")).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key}=")))
        .map(str::to_string)
        .collect();
    lines.push(format!("{key}={value}"));
    std::fs::write(dir.join(".env"), lines.join("\n") + "\n").unwrap();
}

/// The step `name` of run `id`'s `runs show`.
fn step(dir: &Path, id: &str, name: &str) -> serde_json::Value {
    let run = show(dir, id);
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no step {name}: {run}"))
}

fn logs(dir: &Path, id: &str, step: &str) -> String {
    ok(cli(dir).args(["runs", "logs", id, "--step", step]))
}

fn provision(dir: &Path, id: &str) -> std::process::Output {
    cli(dir)
        .args(["cluster", "provision", "--target", "n1", "--run-id", id])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_installer_fails_the_install_and_resume_succeeds_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    repo(dir);
    let good = common::env(dir)["NIXOS_INFECT_URL"].clone();
    let closed = testkit::free_port().unwrap();
    let bad = format!("http://127.0.0.1:{closed}/nixos-infect");
    set_env(dir, "NIXOS_INFECT_URL", &bad);

    let out = provision(dir, "inst-1");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let install = step(dir, "inst-1", "install/n1");
    assert_eq!(install["status"], "failed", "{install}");
    let attempts = install["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        5,
        "a download that failed is retried: {install}"
    );
    let error = attempts.last().unwrap()["error"].as_str().unwrap();
    assert!(
        error.contains("cannot fetch the installer") && error.contains(&bad),
        "{error}"
    );
    assert_eq!(step(dir, "inst-1", "reboot/n1")["status"], "blocked");

    set_env(dir, "NIXOS_INFECT_URL", &good);
    ok(cli(dir).args(["runs", "resume", "inst-1"]));
    assert_eq!(show(dir, "inst-1")["status"], "succeeded");
    let installed = logs(dir, "inst-1", "install/n1");
    assert!(
        installed.contains(&format!("installing nixos-24.11 with {good}")),
        "{installed}"
    );
    // The installer's own output is in the step log.
    assert!(
        installed.contains("nixos-infect (sandbox stand-in)"),
        "{installed}"
    );
    assert!(logs(dir, "inst-1", "verify/n1").contains("NixOS 24.11"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hash_refuses_the_installer_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    repo(dir);
    let right = common::env(dir)["NIXOS_INFECT_SHA256"].clone();
    let wrong = "f".repeat(64);
    set_env(dir, "NIXOS_INFECT_SHA256", &wrong);

    let out = provision(dir, "hash-1");
    assert_eq!(out.status.code(), Some(1));
    let install = step(dir, "hash-1", "install/n1");
    let attempts = install["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "a wrong hash is not retried: {install}");
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&wrong) && error.contains(&right) && error.contains("refusing to run it"),
        "{error}"
    );
    let ip = common::servers(dir).await[0].1.clone();
    let node = on_node(
        dir,
        "n1",
        &ip,
        "command -v nixos-version || echo none; ls -A /etc/nixos; ls /root",
    )
    .await;
    assert_eq!(node, "none\n", "the installer never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nixos_version_picks_the_channel_and_the_reboot_keeps_the_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    repo(dir);
    let out = cli(dir)
        .args([
            "cluster",
            "provision",
            "--target",
            "n1",
            "--nixos-version",
            "24",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--nixos-version 24: give a NixOS release"),
        "{stderr}"
    );
    assert!(
        common::servers(dir).await.is_empty(),
        "refused before anything exists"
    );

    ok(cli(dir).args([
        "cluster",
        "provision",
        "--target",
        "n1",
        "--nixos-version",
        "25.05",
        "--run-id",
        "ver-1",
    ]));
    let ip = common::servers(dir).await[0].1.clone();
    let version = on_node(dir, "n1", &ip, "nixos-version").await;
    assert_eq!(version, "25.05.20241201.0000000 (Warbler)\n");
    assert!(logs(dir, "ver-1", "install/n1").contains("installing nixos-25.05"));

    // The key pinned at first contact is the one the node came back with.
    let known = dir.join("ssh/known_hosts");
    let listed = std::process::Command::new("ssh-keygen")
        .args(["-l", "-F", &ip, "-f"])
        .arg(&known)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let pinned: Vec<&str> = listed
        .split_whitespace()
        .filter(|w| w.starts_with("SHA256:"))
        .collect();
    assert_eq!(pinned.len(), 1, "{listed}");
    let rebooted = logs(dir, "ver-1", "reboot/n1");
    assert!(
        rebooted.contains(&format!("the pinned host key {}", pinned[0])),
        "{rebooted}"
    );

    // Provisioning again finds NixOS: no second install, no reboot.
    ok(cli(dir).args([
        "cluster",
        "provision",
        "--target",
        "n1",
        "--run-id",
        "ver-2",
    ]));
    assert!(logs(dir, "ver-2", "install/n1").contains("already runs NixOS"));
    assert!(logs(dir, "ver-2", "reboot/n1").contains("no reboot"));
}
