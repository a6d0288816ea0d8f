//! `POST /api/runs` accepts exactly what the CLI accepts: the same typed
//! request, the same checks, the same message (HTTP 400 where the CLI exits 2),
//! and nothing written either way.

mod common;

use common::{cli, http, ok, serve};
use std::path::Path;

const TOKEN: &str = "test-token-1f2e";

/// A cluster repo on machines of its own (`servers.yaml`): its inventory
/// needs no cloud. It has the control node type and no cluster node type.
fn repo(dir: &Path) {
    ok(cli(dir).args(["init", "--cluster", "api"]));
    std::fs::create_dir_all(dir.join("node_types")).unwrap();
    std::fs::write(dir.join("node_types/control_node.nix"), "{ ... }: { }\n").unwrap();
    std::fs::write(
        dir.join("servers.yaml"),
        "servers:\n  - name: ctrl1\n    ipv4: 127.0.0.1\n    role: ctrl\n  - name: box1\n    ipv4: 127.0.0.1\n    role: cluster\n",
    )
    .unwrap();
}

#[test]
fn the_api_refuses_what_the_cli_refuses_with_the_same_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    repo(dir);
    let server = serve(dir);
    // ctrl1's own file names a placeholder nix-infra has no value for.
    std::fs::create_dir_all(dir.join("nodes")).unwrap();
    std::fs::write(
        dir.join("nodes/ctrl1.nix"),
        "{ ... }: { x = \"[%%nope%%]\"; }\n",
    )
    .unwrap();
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["cluster", "destroy", "--batch", "--target", "Bad_Name"],
            r#"{"request": "destroy", "target": "Bad_Name"}"#,
            "`Bad_Name` is not a node name",
        ),
        (
            &["cluster", "init-node", "--target", "box1 ghost"],
            r#"{"request": "init-node", "target": "box1 ghost"}"#,
            "no server named ghost in cluster",
        ),
        (
            &["cluster", "update-node", "--target", "box1"],
            r#"{"request": "update-node", "target": "box1"}"#,
            "has no node_types/cluster_node.nix",
        ),
        (
            &["cluster", "init-ctrl", "--target", "box1"],
            r#"{"request": "init-ctrl", "target": "box1"}"#,
            "box1 is a cluster node, not a control node",
        ),
        (
            &["cluster", "init-ctrl", "--target", "ctrl1"],
            r#"{"request": "init-ctrl", "target": "ctrl1"}"#,
            "\n  ctrl1:\n    nodes/ctrl1.nix: unknown placeholder [%%nope%%]",
        ),
    ];
    for (args, body, says) in cases {
        let out = cli(dir).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // After any warning (no nix-instantiate on this machine, say).
        let cli_message = stderr
            .trim()
            .split_once("error: ")
            .map_or(stderr.as_ref(), |(_, m)| m);
        assert!(cli_message.contains(says), "{args:?}: {stderr}");

        let (status, reply) = http(&server.base, "POST", "/api/runs", Some(TOKEN), body);
        assert_eq!(status, 400, "{body}: {reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"].as_str(), Some(cli_message), "{body}");
    }
    // A field the request does not have is refused by name, not ignored.
    let (status, reply) = http(
        &server.base,
        "POST",
        "/api/runs",
        Some(TOKEN),
        r#"{"request": "init-node", "targte": "box1"}"#,
    );
    assert_eq!(status, 400);
    assert!(reply.contains("unknown field `targte`"), "{reply}");
    // Nothing was started by either.
    let (_, runs) = http(&server.base, "GET", "/api/runs", None, "");
    assert_eq!(runs.trim(), "[]", "{runs}");
    assert_eq!(
        ok(cli(dir).args(["runs", "list", "--output", "json"])).trim(),
        "[]"
    );
}
