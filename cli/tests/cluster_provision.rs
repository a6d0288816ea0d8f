//! `nix-infra cluster provision` on the sandbox: durable, resumable, never two servers per node.

mod common;

use common::{Down, cli, show};

async fn servers(dir: &std::path::Path) -> Vec<String> {
    common::servers(dir)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect()
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
    common::kill_9_at(
        cli(dir.path()).args([
            "cluster",
            "provision",
            "--target",
            "n1 n2 n3 n4",
            "--run-id",
            "prov-1",
        ]),
        "✓ create/",
    );
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run `nix-infra init`"), "{stderr}");
    common::ok(cli(dir.path()).arg("init"));
    let out = cli(dir.path())
        .args(["cluster", "provision", "--target", "  "])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target names no node"));
    // No token anywhere: refused before a run exists.
    let out = cli(dir.path())
        .args(["cluster", "provision", "--target", "n1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HCLOUD_TOKEN is not set"), "{stderr}");
    assert!(
        !dir.path().join(".nix-infra").exists(),
        "no state was written"
    );
}
