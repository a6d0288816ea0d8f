//! SSH connections dropped in the middle of a step (every sshd session of
//! the node killed, as a network blip would end them): an idempotent step
//! retries and its run succeeds; a command may have run, so its run fails
//! saying so, and `runs resume` runs it again only when told to.

mod common;

use common::{Down, cli, ok, on_terminal, show};

/// Attempts of `step` in run `id`, by status.
fn attempts(dir: &std::path::Path, id: &str, step: &str) -> Vec<String> {
    let run = show(dir, id);
    let s = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .cloned();
    s.unwrap_or_else(|| panic!("no {step}: {run}"))["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap().to_string())
        .collect()
}

/// A command that drops the node's connections the first time it runs.
fn blip(marker: &str) -> String {
    format!(
        "if [ ! -e /var/lib/{marker} ]; then touch /var/lib/{marker}; pkill -9 -f 'sshd: root'; fi; echo ran"
    )
}

#[test]
fn a_dropped_connection_is_retried_by_idempotent_steps_and_never_by_commands() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let _down = Down(dir.to_path_buf());
    common::cluster_repo(dir, "hello");
    ok(cli(dir).args(["cluster", "up", "--workers", "1", "--ingress", "0"]));

    // The rebuild loses its connection once: retried, and the run succeeds.
    ok(cli(dir).args([
        "cluster",
        "cmd",
        "--target",
        "worker1",
        "touch /var/lib/nixos-standin/drop-connections",
    ]));
    ok(cli(dir).args([
        "cluster",
        "update-node",
        "--target",
        "worker1",
        "--run-id",
        "u1",
    ]));
    assert_eq!(
        attempts(dir, "u1", "rebuild/worker1"),
        ["failed", "succeeded"]
    );

    // A command loses its connection: it may have run, so it is not retried.
    let out = cli(dir)
        .args([
            "cluster",
            "cmd",
            "--target",
            "worker1",
            "--run-id",
            "c1",
            &blip("once1"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("it may have run"), "{text}");
    assert_eq!(attempts(dir, "c1", "cmd/worker1"), ["failed"]);
    // A script's resume is refused, naming the step and the way on.
    let out = cli(dir)
        .args(["runs", "resume", "c1", "--batch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cmd/worker1 may have run") && err.contains("--rerun-uncertain"),
        "{err}"
    );
    assert_eq!(
        attempts(dir, "c1", "cmd/worker1"),
        ["failed"],
        "nothing ran again"
    );
    // A terminal is asked: no leaves it, yes runs it again.
    let (code, shown) = on_terminal(dir, &["runs", "resume", "c1"], "n\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("Run again? [y/N]"), "{shown}");
    assert_eq!(attempts(dir, "c1", "cmd/worker1"), ["failed"]);
    let (code, shown) = on_terminal(dir, &["runs", "resume", "c1"], "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(attempts(dir, "c1", "cmd/worker1"), ["failed", "succeeded"]);
    // Or, in CI, said up front.
    let out = cli(dir)
        .args([
            "cluster",
            "cmd",
            "--target",
            "worker1",
            "--run-id",
            "c2",
            &blip("once2"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    ok(cli(dir).args(["runs", "resume", "c2", "--batch", "--rerun-uncertain"]));
    assert_eq!(show(dir, "c2")["status"], "succeeded");

    // An app's action is a command too (the repo's action.sh, uploaded as it runs).
    let script = dir.join("app_modules/hello/action.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let blip_case = format!("  blip) {} ;;\n  *)", blip("once3"));
    std::fs::write(&script, text.replacen("  *)", &blip_case, 1)).unwrap();
    let out = cli(dir)
        .args([
            "cluster", "action", "--target", "worker1", "--app", "hello", "--run-id", "a1", "blip",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("it may have run"));
    assert_eq!(attempts(dir, "a1", "action/worker1"), ["failed"]);
    let out = cli(dir)
        .args(["runs", "resume", "a1", "--batch"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "refused without --rerun-uncertain"
    );
    ok(cli(dir).args(["runs", "resume", "a1", "--batch", "--rerun-uncertain"]));
    assert_eq!(
        attempts(dir, "a1", "action/worker1"),
        ["failed", "succeeded"]
    );
}
