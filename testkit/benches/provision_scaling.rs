//! Provisioning 20 nodes vs 1 node on the test cloud (`node.provision`), as a ratio.
//!
//! `cargo bench -p nix-infra-testkit --bench provision_scaling` (needs root: real sshd nodes).
//! Each node: create the server (action delay 300 ms, boot 200 ms), wait for SSH,
//! install NixOS (the sandbox's installer), reboot, verify. The goal is that 20
//! nodes cost at most 3× one node with this install flow (issue #14; it was
//! 1.5× before the download, checksum and reboot): nodes are provisioned
//! concurrently.

mod support;

use serde_json::json;
use std::time::Duration;
use testkit::CloudConfig;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bench = support::Bench::start(CloudConfig {
            action_delay: Duration::from_millis(300),
            boot_delay: Duration::from_millis(200),
            ..CloudConfig::default()
        })
        .await;
        let input = |cluster: String, n: usize| {
            let nodes: Vec<_> = (0..n)
                .map(|i| json!({"name": format!("{cluster}-n{i}")}))
                .collect();
            json!({"cluster": cluster, "dir": bench.dir.path(), "nodes": nodes})
        };
        let (mut one, mut twenty) = (Vec::new(), Vec::new());
        for round in 0..3 {
            one.push(
                bench
                    .time("node.provision", input(format!("a{round}"), 1))
                    .await,
            );
            twenty.push(
                bench
                    .time("node.provision", input(format!("b{round}"), 20))
                    .await,
            );
        }
        support::report("node.provision on the test cloud", one, twenty, 3.0);
        workflows::node::close_connections().await;
    });
}
