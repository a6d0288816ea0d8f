//! `cmd` on 20 nodes vs 1 node on the test cloud (`node.cmd`), as a ratio.
//!
//! `cargo bench -p nix-infra-testkit --bench cmd_scaling` (needs root: real sshd
//! nodes). Each round starts with no open SSH connection, as a fresh
//! `nix-infra cluster cmd` process would: locate the nodes, connect, run
//! `uname -r`, record the result. The goal is at most 3×.
//!
//! Then the same with `--ssh-persist` (60 s): every round is a second `cmd`
//! within the idle time, which finds the masters an earlier `cmd` kept (the
//! pool's memory is emptied between rounds, as a new process's is). The goal
//! is at most 1.5×.

mod support;

use serde_json::json;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bench = support::Bench::start(testkit::CloudConfig::default()).await;
        let nodes: Vec<_> = (0..20)
            .map(|i| json!({"name": format!("n{i}"), "role": "fleet"}))
            .collect();
        let base = json!({"cluster": "bench", "dir": bench.dir.path()});
        let mut provision = base.clone();
        provision["nodes"] = json!(nodes);
        bench.time("node.provision", provision).await;
        let cmd = |n: usize| {
            let mut input = base.clone();
            input["nodes"] = json!(nodes[..n]);
            input["args"] = json!({"command": "uname -r"});
            input
        };
        let (mut one, mut twenty) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            workflows::node::close_connections().await;
            one.push(bench.time("node.cmd", cmd(1)).await);
            workflows::node::close_connections().await;
            twenty.push(bench.time("node.cmd", cmd(20)).await);
        }
        support::report(
            "node.cmd on the test cloud, fresh connections",
            one,
            twenty,
            3.0,
        );
        workflows::node::close_connections().await;

        workflows::node::persist_connections(std::time::Duration::from_secs(60));
        // The first `cmd`: it opens the masters and keeps them.
        bench.time("node.cmd", cmd(20)).await;
        workflows::node::close_connections().await;
        let (mut one, mut twenty) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            one.push(bench.time("node.cmd", cmd(1)).await);
            workflows::node::close_connections().await;
            twenty.push(bench.time("node.cmd", cmd(20)).await);
            workflows::node::close_connections().await;
        }
        support::report(
            "node.cmd again within --ssh-persist (kept masters)",
            one,
            twenty,
            1.5,
        );
        let kept = workflows::node::kept_connections(bench.dir.path());
        // The floor: the same command through the same masters with plain
        // `ssh -S`, no nix-infra (no run, no locks, no commits).
        let sockets: Vec<String> = (0..20)
            .map(|i| {
                let record = kept.dir.join(format!("n{i}.master"));
                let text = std::fs::read_to_string(&record).expect("a kept master");
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                v["ctl"].as_str().unwrap().to_string()
            })
            .collect();
        let plain = |n: usize| {
            let sockets = sockets[..n].to_vec();
            async move {
                let t0 = std::time::Instant::now();
                let runs = sockets.iter().map(|ctl| {
                    tokio::process::Command::new("ssh")
                        .args(["-S", ctl, "x", "uname -r"])
                        .output()
                });
                for out in futures::future::join_all(runs).await {
                    assert!(out.unwrap().status.success());
                }
                t0.elapsed()
            }
        };
        let (mut one, mut twenty) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            one.push(plain(1).await);
            twenty.push(plain(20).await);
        }
        support::report("plain ssh -S over the same masters", one, twenty, 1.5);
        kept.close_all().await.unwrap();
    });
}
