//! Day-2 on the sandbox: app lifecycles against etcd, `cmd` across 20 nodes,
//! a rolling upgrade that stops at a failed batch, and secret rotation under
//! a per-second schedule surviving a killed worker.

mod common;

use common::{Down, Worker, cli, cluster_repo, etcd, last_json, ok, on_node, servers};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// Polls `runs list` until `done` holds, failing after `limit`.
fn wait_runs(
    dir: &Path,
    url: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let out = ok(cli(dir).env("DATABASE_URL", url).args([
            "runs",
            "list",
            "--limit",
            "1000",
            "--workflow",
            "secret.rotate",
            "--output",
            "json",
        ]));
        let list = last_json(&out).as_array().unwrap().clone();
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {list:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_goes_through_its_lifecycle_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "app-greeting-5e1d");
    ok(cli(dir).args(["cluster", "up", "--workers", "2", "--ingress", "0"]));
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    let reg = etcd(dir, &ip["ctrl1"]).await;
    let backends = || async { reg.raw("/cluster/backends/").await.unwrap() };

    ok(cli(dir).args([
        "app",
        "register",
        "--app",
        "hello",
        "--port",
        "5678",
        "--env-var",
        "MODE=demo",
    ]));
    assert_eq!(
        backends().await,
        BTreeMap::from([(
            "/cluster/backends/hello/meta_data".to_string(),
            r#"{"publish":{"port":5678},"env_prefix":"HELLO","env":{"MODE":"demo"}}"#.to_string()
        )])
    );

    // Deploying needs the node to import the app; worker2 does not yet.
    let out = cli(dir)
        .args([
            "app",
            "deploy",
            "--app",
            "hello",
            "--target",
            "worker1 worker2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("nodes/worker2.nix does not import ./app_modules/hello")
    );
    write(
        dir,
        "nodes/worker2.nix",
        "{ ... }: { imports = [ ./app_modules/hello ]; }\n",
    );
    ok(cli(dir).args([
        "app",
        "deploy",
        "--app",
        "hello",
        "--target",
        "worker1 worker2",
    ]));
    for n in ["worker1", "worker2"] {
        let files = on_node(
            dir,
            n,
            &ip[n],
            "ls /etc/nixos/app_modules/hello /root/secrets",
        )
        .await;
        assert!(
            files.contains("default.nix") && files.contains("hello-greeting"),
            "{n}: {files}"
        );
    }

    ok(cli(dir).args([
        "app",
        "register-instance",
        "--app",
        "hello",
        "--target",
        "worker1 worker2",
    ]));
    let overlay = |n: &str| {
        let reg = reg.clone();
        let public = ip[n].clone();
        async move { reg.overlay_ip(&public).await.unwrap().unwrap() }
    };
    let (o1, o2) = (overlay("worker1").await, overlay("worker2").await);
    let meta =
        r#"{"publish":{"port":5678},"env_prefix":"HELLO","env":{"MODE":"demo"}}"#.to_string();
    let instance = |n: &str, o: &str| {
        (
            format!("/cluster/backends/hello/instances/{n}"),
            format!(r#"{{"node":"{n}","ipv4":"{o}","port":5678}}"#),
        )
    };
    assert_eq!(
        backends().await,
        BTreeMap::from([
            (
                "/cluster/backends/hello/meta_data".to_string(),
                meta.clone()
            ),
            instance("worker1", &o1),
            instance("worker2", &o2),
        ])
    );

    let listed = last_json(&ok(
        cli(dir).args(["--output", "json", "cluster", "etcd", "backends"])
    ));
    assert_eq!(listed["hello"]["instances"]["worker2"]["ipv4"], o2.as_str());
    let nodes = ok(cli(dir).args(["cluster", "etcd", "nodes"]));
    assert!(
        nodes.contains("worker1") && nodes.contains("worker2") && !nodes.contains("ctrl1"),
        "{nodes}"
    );

    // An action's output saved as a secret is never shown nor stored in the clear.
    let out = ok(cli(dir).args([
        "cluster",
        "action",
        "--target",
        "worker1",
        "--app",
        "hello",
        "--save-as-secret",
        "greeting2",
        "new-greeting",
    ]));
    let saved = ok(cli(dir).args(["secrets", "get", "--name", "greeting2"]));
    assert!(saved.starts_with("hello "), "{saved}");
    assert!(!out.contains(saved.trim()), "printed: {out}");
    let db = std::fs::read(dir.join(".nix-infra/state.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(saved.trim()));

    // An action's variables can name the node's own values: here its overlay
    // address, from the registry (shown changed: a value itself is redacted).
    write(
        dir,
        "app_modules/hello/action.sh",
        "case \"$1\" in peer) echo \"peer=${PEER//./-}\" ;; *) exit 2 ;; esac\n",
    );
    let out = ok(cli(dir).args([
        "cluster",
        "action",
        "--target",
        "worker1 worker2",
        "--app-module",
        "hello",
        "--cmd",
        "peer",
        "--env-vars",
        "PEER=[%%overlayIp%%]",
    ]));
    for (n, o) in [("worker1", &o1), ("worker2", &o2)] {
        let want = format!("{n:<14}| peer={}", o.replace('.', "-"));
        assert!(out.contains(&want), "{want}\n{out}");
    }

    ok(cli(dir).args([
        "app",
        "unregister-instance",
        "--app",
        "hello",
        "--target",
        "worker1",
    ]));
    assert_eq!(
        backends().await,
        BTreeMap::from([
            (
                "/cluster/backends/hello/meta_data".to_string(),
                meta.clone()
            ),
            instance("worker2", &o2)
        ])
    );

    // Removing it takes it off the nodes: folder, instance and the secret only it used.
    write(dir, "nodes/worker1.nix", "{ ... }: { }\n");
    write(dir, "nodes/worker2.nix", "{ ... }: { }\n");
    ok(cli(dir).args([
        "app",
        "remove",
        "--app",
        "hello",
        "--target",
        "worker1 worker2",
    ]));
    assert_eq!(
        backends().await,
        BTreeMap::from([("/cluster/backends/hello/meta_data".to_string(), meta)])
    );
    for n in ["worker1", "worker2"] {
        let left = on_node(
            dir,
            n,
            &ip[n],
            "ls /etc/nixos/app_modules /root/secrets 2>/dev/null | grep -v :$ | grep . || true",
        )
        .await;
        assert_eq!(left.trim(), "", "{n} still has: {left}");
    }

    ok(cli(dir).args(["app", "unregister", "--app", "hello"]));
    assert!(backends().await.is_empty());
    assert!(
        reg.raw("/cluster/")
            .await
            .unwrap()
            .keys()
            .all(|k| k.starts_with("/cluster/nodes/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmd_reports_each_node_and_a_rolling_upgrade_stops_at_the_failed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    ok(cli(dir).args(["init", "--example"]));
    ok(cli(dir).args(["sandbox", "up"]));
    let nodes: Vec<String> = (1..=20).map(|k| format!("f{k}")).collect();
    let all = nodes.join(" ");
    ok(cli(dir).args(["fleet", "provision", "--target", &all]));

    // 20 nodes, one fails: 19 ok, 1 failed, non-zero exit. The variable's value stays hidden.
    let out = cli(dir)
        .args([
            "--output",
            "json",
            "fleet",
            "cmd",
            "--target",
            &all,
            "--env-vars",
            "TOKEN=tok-93f1b7",
        ])
        .args(["echo $(hostname) $TOKEN; [ $(hostname) != f7 ] || { echo broken >&2; exit 3; }"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary = last_json(&String::from_utf8_lossy(&out.stdout));
    let results: Vec<(&str, &str)> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results.len(), 20);
    assert_eq!(
        results.iter().filter(|(_, r)| *r == "ok").count(),
        19,
        "{summary}"
    );
    let failed: Vec<_> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["node"], "f7");
    assert_eq!(failed[0]["error"], "exit 3: broken");
    let id = summary["id"].as_str().unwrap();
    let logs = ok(cli(dir).args(["runs", "logs", id]));
    assert!(logs.contains("f12 [redacted]"), "{logs}");
    for text in [
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        logs,
    ] {
        assert!(!text.contains("tok-93f1b7"), "the value leaked: {text}");
    }
    let db = std::fs::read(dir.join(".nix-infra/state.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("tok-93f1b7"));
    // The failed run keeps its secret, so it can be resumed; a different command
    // under the same run id is refused and leaves that secret alone.
    let secret = format!("env.{id}");
    let has_secret = || ok(cli(dir).args(["secrets", "list"])).contains(&secret);
    assert!(has_secret(), "the failed run's secret is kept");
    let clash = cli(dir)
        .args([
            "--run-id",
            id,
            "fleet",
            "cmd",
            "--target",
            "f1",
            "--env-vars",
            "TOKEN=other",
        ])
        .args(["true"])
        .output()
        .unwrap();
    assert_eq!(clash.status.code(), Some(2));
    assert!(has_secret(), "a refused start removed another run's secret");
    // In text mode each node's output and exit show.
    let text = ok(cli(dir).args(["fleet", "cmd", "--target", "f1 f2", "hostname"]));
    assert!(
        text.contains("f1            | f1") && text.contains("f2            | f2"),
        "{text}"
    );

    // Rolling upgrade, 2 at a time over 5 nodes; the third node's rebuild fails.
    let five = "f1 f2 f3 f4 f5";
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    let generation = |n: &'static str| {
        let (dir, ip) = (dir.to_path_buf(), ip[n].clone());
        async move {
            on_node(&dir, n, &ip, "cat /var/lib/nixos-standin/current")
                .await
                .trim()
                .to_string()
        }
    };
    on_node(
        dir,
        "f3",
        &ip["f3"],
        "echo '{ broken' > /etc/nixos/broken.nix",
    )
    .await;
    let before = generation("f5").await;
    let out = cli(dir)
        .args([
            "--output",
            "json",
            "fleet",
            "upgrade-nixos",
            "--target",
            five,
            "--batch",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary = last_json(&String::from_utf8_lossy(&out.stdout));
    let result: BTreeMap<String, String> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(result["f1"], "ok");
    assert_eq!(result["f2"], "ok");
    assert_eq!(result["f3"], "failed");
    assert_eq!(result["f4"], "ok", "its batch-mate finishes");
    assert_eq!(result["f5"], "blocked", "the next batch is untouched");
    assert_eq!(generation("f5").await, before);

    // Rollback and garbage collection, per node.
    let upgraded = generation("f1").await.parse::<u32>().unwrap();
    ok(cli(dir).args(["fleet", "rollback", "--target", "f1"]));
    assert_eq!(generation("f1").await.parse::<u32>().unwrap(), upgraded - 1);
    ok(cli(dir).args(["fleet", "gc", "--target", "f1 f2"]));
    for n in ["f1", "f2"] {
        let log = on_node(dir, n, &ip[n], "cat /var/lib/nixos-standin/gc.log").await;
        assert!(log.contains("-d"), "{n}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_a_schedule_finishes_once_per_fire_and_survives_a_killed_worker() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "first-value");
    // The app's health check waits for /root/go: the test decides when a rotation may finish.
    write(
        dir,
        "app_modules/hello/action.sh",
        "#!/bin/sh\ncase \"$1\" in health) while [ ! -e /root/go ]; do sleep 0.05; done; echo ok ;; esac\n",
    );
    ok(cli(dir).env("DATABASE_URL", &url).args([
        "cluster",
        "up",
        "--workers",
        "1",
        "--ingress",
        "0",
    ]));
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    on_node(dir, "worker1", &ip["worker1"], "touch /root/go").await;
    let secrets = || -> Value {
        let out = ok(cli(dir).args(["secrets", "list", "--output", "json"]));
        last_json(&out)
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "hello-greeting")
            .cloned()
            .unwrap()
    };
    // The version before any rotation (`init --example` stored one, the test another).
    let first = secrets()["current"].as_u64().unwrap();
    let input = serde_json::json!({
        "cluster": common::cluster_name(dir),
        "dir": std::fs::canonicalize(dir).unwrap(),
        "args": {"secret": "hello-greeting"}
    });
    ok(cli(dir).env("DATABASE_URL", &url).args([
        "schedule",
        "add",
        "rot",
        "--cron",
        "* * * * * *",
        "--workflow",
        "secret.rotate",
        "--resources",
        "secret/hello-greeting",
        "--input",
        &input.to_string(),
    ]));

    let worker = Worker::start(dir, &url);
    let done =
        |n: usize| move |l: &[Value]| l.iter().filter(|r| r["status"] == "succeeded").count() >= n;
    wait_runs(dir, &url, Duration::from_secs(60), "3 rotations", done(3));

    // Hold the next rotation in verify, then kill the worker there.
    on_node(dir, "worker1", &ip["worker1"], "rm -f /root/go").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let runs = wait_runs(dir, &url, Duration::from_secs(60), "runs", |_| true);
        let running = runs
            .iter()
            .find(|r| r["status"] == "running")
            .map(|r| r["id"].as_str().unwrap().to_string());
        if let Some(id) = running {
            let show = last_json(&ok(cli(dir)
                .env("DATABASE_URL", &url)
                .args(["runs", "show", &id, "--output", "json"])));
            let verify = show["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "verify")
                .unwrap()
                .clone();
            if verify["status"] == "running" {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "no rotation reached verify");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The schedule goes on firing; a fire waits for the held run's lock.
    let later = |r: &Value| r["id"].as_str() > Some(held.as_str());
    wait_runs(
        dir,
        &url,
        Duration::from_secs(60),
        "a fire behind it",
        |l| l.iter().any(|r| later(r) && r["status"] == "pending"),
    );
    drop(worker); // SIGKILL mid-rotation
    ok(cli(dir)
        .env("DATABASE_URL", &url)
        .args(["schedule", "pause", "rot"]));
    // Those fires never started. Cancel them, so that what follows is the
    // held run alone.
    for r in wait_runs(dir, &url, Duration::from_secs(60), "runs", |_| true) {
        assert!(
            r["status"] != "running" || r["id"] == held.as_str(),
            "a second rotation ran beside the held one: {r}"
        );
        if r["status"] == "pending" {
            ok(cli(dir).env("DATABASE_URL", &url).args([
                "runs",
                "cancel",
                r["id"].as_str().unwrap(),
            ]));
        }
    }
    let mid = secrets();
    assert!(mid["pending"].is_number(), "a new version is staged: {mid}");
    assert_eq!(
        mid["current"].as_u64().unwrap() + 1,
        mid["pending"].as_u64().unwrap()
    );

    // The next worker finishes it; until then the old version stayed current.
    on_node(dir, "worker1", &ip["worker1"], "touch /root/go").await;
    let _worker = Worker::start(dir, &url);
    let runs = wait_runs(
        dir,
        &url,
        Duration::from_secs(90),
        "the held rotation",
        |l| {
            l.iter()
                .any(|r| r["id"] == held.as_str() && r["status"] == "succeeded")
                && l.iter()
                    .all(|r| r["status"] != "running" && r["status"] != "pending")
        },
    );
    let after = secrets();
    assert_eq!(after["current"], mid["pending"], "{after} {runs:#?}");
    assert!(after["pending"].is_null());
    // Once per fire: every run is a distinct fire time, and each moved the version by one.
    let succeeded = runs.iter().filter(|r| r["status"] == "succeeded").count() as u64;
    assert!(
        runs.iter()
            .all(|r| r["id"].as_str().unwrap().starts_with("schedule:rot:"))
    );
    assert_eq!(
        after["current"].as_u64().unwrap(),
        first + succeeded,
        "{runs:#?}"
    );
}
