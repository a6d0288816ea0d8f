//! A `cmd --env-vars` run's own secret outlives a failure (a resume needs
//! it) and is removed once the run, resumed, succeeds.

mod common;

use common::{Down, cli, ok, on_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_removes_its_own_secret_once_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    let ip = common::one_fleet_node(dir, "f1").await;
    let out = cli(dir)
        .args([
            "fleet",
            "cmd",
            "--target",
            "f1",
            "--run-id",
            "s1",
            "--env-vars",
            "TOKEN=tok-77",
        ])
        .arg("test -f /root/ready")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        ok(cli(dir).args(["secrets", "list"])).contains("env.s1"),
        "kept for the resume"
    );
    on_node(dir, "f1", &ip, "touch /root/ready").await;
    ok(cli(dir).args(["runs", "resume", "s1"]));
    assert!(
        !ok(cli(dir).args(["secrets", "list"])).contains("env.s1"),
        "removed once it succeeded"
    );
}
