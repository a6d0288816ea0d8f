//! The checks before spending: a repo whose configuration would not deploy
//! is refused before a run exists and before any server is created, and
//! `nix-infra check` makes the same checks alone.

mod common;

use common::{Down, cli, ok, servers};
use std::path::Path;

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// `cluster up` is refused (exit 2) with every string of `says` on stderr;
/// no run exists and the cloud holds no server afterwards.
async fn refused(dir: &Path, says: &[&str]) {
    let out = cli(dir).args(["cluster", "up"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for s in says {
        assert!(stderr.contains(s), "{s}: {stderr}");
    }
    let runs = ok(cli(dir).args(["runs", "list", "--output", "json"]));
    assert_eq!(runs.trim(), "[]", "no run exists");
    assert!(servers(dir).await.is_empty(), "no server was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_that_would_not_deploy_is_refused_before_any_run_or_server() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    ok(cli(dir).args(["init", "--example"]));
    ok(cli(dir).args(["sandbox", "up"]));

    // A Nix syntax error in a node's own file.
    let worker1 = read(dir, "nodes/worker1.nix");
    write(dir, "nodes/worker1.nix", &worker1.replace("];", "; ]"));
    refused(
        dir,
        &[
            "\n  worker1:\n    nodes/worker1.nix: does not parse: syntax error",
            "(line 5, column",
        ],
    )
    .await;
    write(dir, "nodes/worker1.nix", &worker1);

    // An unknown placeholder in a node type: every node of that type is named.
    let cluster = read(dir, "node_types/cluster_node.nix");
    write(
        dir,
        "node_types/cluster_node.nix",
        &cluster.replace("[%%overlayIp%%]", "[%%overlayAddress%%]"),
    );
    refused(
        dir,
        &["\n  worker1, worker2:\n    node_types/cluster_node.nix: unknown placeholder [%%overlayAddress%%]"],
    )
    .await;
    write(dir, "node_types/cluster_node.nix", &cluster);

    // A secret the app references that the store does not hold.
    ok(cli(dir).args(["secrets", "remove", "--name", "hello-greeting"]));
    refused(
        dir,
        &[
            "\n  worker1:\n    app_modules/hello/default.nix: references /root/secrets/hello-greeting, \
             which is not in the secret store (`nix-infra secrets store --name hello-greeting`)",
        ],
    )
    .await;

    // The same refusal for the commands that render on existing nodes.
    let out = cli(dir)
        .args(["plan", "cluster", "up", "--workers", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hello-greeting"));
}

#[test]
fn check_reports_each_node_and_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).args(["init", "--example"]));
    let out = ok(cli(dir).arg("check"));
    assert!(out.starts_with("layout: nix-infra layout"), "{out}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{out}");
    for node in ["worker1", "ctrl1", "ingress1", "fleet1"] {
        let row = rows.iter().find(|r| r.starts_with(node)).unwrap();
        assert!(row.ends_with(" ok"), "{row}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(cli(dir).args(["check", "--output", "json"]))).unwrap();
    assert_eq!(json["ok"], true, "{json}");
    // Without nix-instantiate the files are not parsed: said once, not a failure.
    let out = cli(dir)
        .env("PATH", "/nonexistent")
        .arg("check")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("warning: nix-instantiate is not installed")
            .count(),
        1,
        "{stderr}"
    );

    // Three problems on three nodes: all of them, with exit status 2.
    write(dir, "nodes/worker2.nix", "{ ... }: { imports = [ ; }\n");
    let ingress = read(dir, "node_types/ingress_node.nix");
    write(
        dir,
        "node_types/ingress_node.nix",
        &ingress.replace("[%%certsDir%%]", "[%%certDir%%]"),
    );
    ok(cli(dir).args(["secrets", "remove", "--name", "hello-greeting"]));
    let out = cli(dir).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "worker1   cluster  1 problem\n  app_modules/hello/default.nix: references /root/secrets/hello-greeting",
        "worker2   cluster  1 problem\n  nodes/worker2.nix: does not parse: syntax error, unexpected ';' (line 1, column 24)",
        "ingress1  ingress  1 problem\n  node_types/ingress_node.nix: unknown placeholder [%%certDir%%]",
        "ctrl1     ctrl     ok",
        "fleet1    fleet    ok",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 of 5 nodes would not deploy: worker1, worker2, ingress1"),
        "{stderr}"
    );
    let out = cli(dir)
        .args(["check", "--output", "json", "--target", "worker2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["nodes"][0]["node"], "worker2");
    assert_eq!(json["nodes"][0]["problems"][0]["file"], "nodes/worker2.nix");
    assert!(!dir.join(".nix-infra").exists(), "check writes no state");
}
