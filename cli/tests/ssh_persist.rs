//! `cmd` hands its SSH masters on to the next `cmd` (`--ssh-persist`, 60 s
//! by default), as a user runs it again seconds later: the second `cmd` opens
//! no connection of its own. `ssh-close` closes them, `--ssh-persist 0` keeps
//! nothing. Connections are read from the kernel's table, not from our code.

mod common;

use common::{Down, cli, ok};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The local ends of this machine's established TCP connections to `ip:22`.
fn connections_to(ip: &str) -> BTreeSet<String> {
    let ip: Ipv4Addr = ip.parse().unwrap();
    // /proc/net/tcp writes an IPv4 address as its in-memory u32 (little-endian here).
    let remote = format!("{:08X}:0016", u32::from_le_bytes(ip.octets()));
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2] == remote && f[3] == "01").then(|| f[1].to_string())
        })
        .collect()
}

/// Waits until no connection to `ip:22` is left.
async fn until_closed(ip: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !connections_to(ip).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            connections_to(ip)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cmd_reuses_the_first_ones_connection_until_ssh_close() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    let ip = common::one_fleet_node(dir, "f1").await;
    until_closed(&ip, "provision keeps nothing").await;

    let out = ok(cli(dir).args(["fleet", "cmd", "--target", "f1", "hostname"]));
    assert!(out.contains("| f1"), "{out}");
    let kept = connections_to(&ip);
    assert_eq!(kept.len(), 1, "one master stays up after cmd ends");
    for _ in 0..2 {
        let out = ok(cli(dir).args(["fleet", "cmd", "--target", "f1", "hostname"]));
        assert!(out.contains("| f1"), "{out}");
        assert_eq!(connections_to(&ip), kept, "the same connection, no new one");
    }
    // The masters live outside the repo.
    let inside = walk(dir);
    assert!(
        !inside
            .iter()
            .any(|p| p.contains("ssh-connection") || p.ends_with(".master")),
        "{inside:?}"
    );

    let out = ok(cli(dir).args(["fleet", "ssh-close"]));
    assert!(out.contains("closed 1 SSH connection"), "{out}");
    until_closed(&ip, "ssh-close").await;
    let out = ok(cli(dir).args(["--output", "json", "fleet", "ssh-close"]));
    assert_eq!(common::last_json(&out)["closed"], 0);

    ok(cli(dir).args([
        "fleet",
        "cmd",
        "--ssh-persist",
        "0",
        "--target",
        "f1",
        "hostname",
    ]));
    until_closed(&ip, "--ssh-persist 0 keeps nothing").await;

    let help = ok(cli(dir).args(["fleet", "cmd", "--help"]));
    assert!(
        help.contains("--ssh-persist <SECONDS>") && help.contains("[default: 60]"),
        "{help}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        all.push(p.display().to_string());
        if p.is_dir() && !p.is_symlink() {
            all.extend(walk(&p));
        }
    }
    all
}
