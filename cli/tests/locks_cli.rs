//! Runs a CLI executes itself take their nodes' locks as a worker's runs
//! do: a second `cmd` on a node another `cmd` is using waits for it, says
//! so, and runs after it.

mod common;

use common::{Down, cli, on_node};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cmd_on_a_node_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    let ip = common::one_fleet_node(dir, "f1").await;
    let hold = "touch /root/first; while [ ! -f /root/go ]; do sleep 0.05; done";
    let mut first = cli(dir)
        .args(["fleet", "cmd", "--target", "f1", hold])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !on_node(dir, "f1", &ip, "ls /root")
        .await
        .lines()
        .any(|l| l == "first")
    {
        assert!(Instant::now() < deadline, "the first cmd never started");
        tokio::task::yield_now().await;
    }
    let mut second = cli(dir)
        .args(["fleet", "cmd", "--target", "f1", "touch /root/second"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(second.stderr.take().unwrap()).lines();
    let said = err
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("waiting for a resource lock"));
    assert!(said.is_some_and(|l| l.contains("node/f1") && l.contains("held by run")));
    assert!(
        !on_node(dir, "f1", &ip, "ls /root").await.contains("second"),
        "ran while f1 was held"
    );
    on_node(dir, "f1", &ip, "touch /root/go").await;
    assert!(first.wait().unwrap().success());
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    assert!(second.wait().unwrap().success(), "{rest:?}");
    assert!(on_node(dir, "f1", &ip, "ls /root").await.contains("second"));
}
