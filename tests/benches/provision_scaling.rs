//! Provisioning 20 nodes vs 1 node on the test cloud (`node.provision`), as a ratio.
//!
//! `cargo bench -p nix-infra-tests --bench provision_scaling` (needs root: real sshd nodes).
//! Each node: create the server (action delay 300 ms, boot 200 ms), wait for SSH,
//! install NixOS (stand-in), verify. The goal is that 20 nodes cost at most 1.5×
//! one node: nodes are provisioned concurrently.

use engine::{Engine, Observer, RunStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{CloudConfig, TestCloud};
use tokio_util::sync::CancellationToken;

async fn provision(engine: &Engine, dir: &std::path::Path, cluster: &str, n: usize) -> Duration {
    let nodes: Vec<_> = (0..n)
        .map(|i| json!({"name": format!("{cluster}-n{i}")}))
        .collect();
    let input = json!({"cluster": cluster, "dir": dir, "nodes": nodes});
    let t0 = Instant::now();
    let id = engine
        .create("node.provision", input, None)
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
            action_delay: Duration::from_millis(300),
            boot_delay: Duration::from_millis(200),
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
        let mut one = Vec::new();
        let mut twenty = Vec::new();
        for round in 0..3 {
            one.push(provision(&engine, dir.path(), &format!("a{round}"), 1).await);
            twenty.push(provision(&engine, dir.path(), &format!("b{round}"), 20).await);
        }
        one.sort();
        twenty.sort();
        let (o, t) = (one[1], twenty[1]);
        println!("node.provision on the test cloud (median of 3):");
        println!("  1 node:   {:>7.0} ms", o.as_secs_f64() * 1e3);
        println!("  20 nodes: {:>7.0} ms", t.as_secs_f64() * 1e3);
        println!(
            "  ratio:    {:.2}x (goal <= 1.5x)",
            t.as_secs_f64() / o.as_secs_f64()
        );
        workflows::node::close_connections().await;
    });
}
