//! `cmd` on 20 nodes vs 1 node on the test cloud (`node.cmd`), as a ratio.
//!
//! `cargo bench -p nix-infra-tests --bench cmd_scaling` (needs root: real sshd
//! nodes). Each round starts with no open SSH connection, as a fresh
//! `nix-infra cluster cmd` process would: locate the node, connect, run
//! `uname -r`, record the result. The goal is at most 3×.

use engine::{Engine, Observer, RunStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{CloudConfig, TestCloud};
use tokio_util::sync::CancellationToken;

async fn run(engine: &Engine, workflow: &str, input: serde_json::Value) -> Duration {
    let t0 = Instant::now();
    let id = engine
        .create(workflow, input, None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    let out = engine
        .execute(&id, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    t0.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cloud = TestCloud::start(CloudConfig {
            nodes: true,
            ..CloudConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            format!(
                "HCLOUD_ENDPOINT={}\nHCLOUD_TOKEN={}\n",
                cloud.endpoint(),
                cloud.token()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join("keys/id_ed25519"))
                .status()
                .unwrap()
                .success()
        );
        let store = storage::connect(&testkit::sqlite_url(dir.path()))
            .await
            .unwrap();
        let config = engine::EngineConfig {
            concurrency: 64,
            ..engine::EngineConfig::default()
        };
        let engine = Engine::new(Arc::new(store), workflows::registry()).with_config(config);
        let nodes: Vec<_> = (0..20)
            .map(|i| json!({"name": format!("n{i}"), "role": "fleet"}))
            .collect();
        let base = json!({"cluster": "bench", "dir": dir.path()});
        let mut provision = base.clone();
        provision["nodes"] = json!(nodes);
        run(&engine, "node.provision", provision).await;
        let cmd = |n: usize| {
            let mut input = base.clone();
            input["nodes"] = json!(nodes[..n]);
            input["args"] = json!({"command": "uname -r"});
            input
        };
        let (mut one, mut twenty) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            workflows::node::close_connections().await;
            one.push(run(&engine, "node.cmd", cmd(1)).await);
            workflows::node::close_connections().await;
            twenty.push(run(&engine, "node.cmd", cmd(20)).await);
        }
        one.sort();
        twenty.sort();
        let (o, t) = (one[2], twenty[2]);
        println!("node.cmd on the test cloud, fresh connections (median of 5):");
        println!("  1 node:   {:>7.0} ms", o.as_secs_f64() * 1e3);
        println!("  20 nodes: {:>7.0} ms", t.as_secs_f64() * 1e3);
        println!(
            "  ratio:    {:.2}x (goal <= 3x)",
            t.as_secs_f64() / o.as_secs_f64()
        );
        workflows::node::close_connections().await;
    });
}
