//! `nix-infra serve` in real headless Chromium (Debian's `chromium`), plus its
//! API's token check over plain HTTP.

mod common;

use common::browser::{artifacts, chromium, dom};
use common::{Down, cli, http, ok, serve};
use std::time::{Duration, Instant};

#[test]
fn pages_load_the_dag_shows_each_status_and_mutations_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).args([
        "runs",
        "start",
        "diag.chain",
        "--run-id",
        "good",
        "--input",
        r#"{"steps":3}"#,
    ]));
    let failed = cli(dir)
        .args([
            "runs",
            "start",
            "diag.chain",
            "--run-id",
            "bad",
            "--input",
            r#"{"steps":5,"fail_step":3,"fail_times":9,"max_attempts":1}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    ok(cli(dir).args([
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--workflow",
        "diag.chain",
        "--input",
        r#"{"steps":1}"#,
    ]));
    let server = serve(dir);
    let profile = tempfile::tempdir().unwrap();

    let runs = dom(profile.path(), &format!("{}/", server.base));
    assert!(runs.contains(r#"<a href="/runs/good">good</a>"#), "{runs}");
    assert!(runs.contains(r#"<a href="/runs/bad">bad</a>"#));
    assert!(
        runs.contains(r#"data-status="failed""#) && runs.contains(r#"data-status="succeeded""#)
    );
    let filtered = dom(profile.path(), &format!("{}/?status=failed", server.base));
    assert!(
        filtered.contains("/runs/bad") && !filtered.contains("/runs/good"),
        "{filtered}"
    );

    let run = dom(profile.path(), &format!("{}/runs/bad", server.base));
    for (step, status) in [
        ("step-1", "succeeded"),
        ("step-2", "succeeded"),
        ("step-3", "failed"),
        ("step-4", "blocked"),
        ("step-5", "blocked"),
    ] {
        assert!(
            run.contains(&format!(
                r#"<g class="step" data-step="{step}" data-status="{status}">"#
            )),
            "{step} {status}: {run}"
        );
    }
    assert!(run.contains("step-2#1 link 2 done"), "the log: {run}");
    assert!(
        run.contains("#1 failed") && run.contains("injected failure 1 of 9"),
        "the attempts: {run}"
    );
    let shot = artifacts().join("dashboard-run.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1280,800", "--hide-scrollbars"])
        .arg(format!("{}/runs/bad", server.base))
        .output()
        .unwrap();
    assert!(out.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot: {} bytes",
        png.len()
    );

    let schedules = dom(profile.path(), &format!("{}/schedules", server.base));
    assert!(
        schedules.contains("nightly") && schedules.contains("0 3 * * *"),
        "{schedules}"
    );

    // Reads are open; starting, resuming and cancelling need the token.
    let start = r#"{"workflow":"diag.chain","input":{"steps":2},"run_id":"from-api"}"#;
    assert_eq!(http(&server.base, "POST", "/api/runs", None, start).0, 401);
    assert_eq!(
        http(
            &server.base,
            "POST",
            "/api/runs",
            Some("test-token-1f2f"),
            start
        )
        .0,
        401
    );
    assert_eq!(
        http(&server.base, "POST", "/api/runs/bad/resume", None, "").0,
        401
    );
    assert_eq!(
        http(
            &server.base,
            "POST",
            "/api/runs/bad/cancel",
            Some("wrong"),
            ""
        )
        .0,
        401
    );
    let (status, body) = http(&server.base, "GET", "/api/runs/from-api", None, "");
    assert_eq!(status, 404, "nothing was started: {body}");
    let (status, body) = http(
        &server.base,
        "POST",
        "/api/runs",
        Some("test-token-1f2e"),
        start,
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http(&server.base, "GET", "/api/runs/from-api", None, "");
        if body.contains(r#""status":"succeeded""#) {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http(&server.base, "GET", "/api/schedules", None, "");
    assert_eq!(status, 200);
    assert!(body.contains(r#""name":"nightly""#), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_matches_etcd_with_servers_and_shows_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    common::cluster_repo(dir, "greeting");
    ok(cli(dir).args(["cluster", "up", "--workers", "1", "--ingress", "0"]));
    // A server labelled for the cluster that nobody registered.
    ok(cli(dir).args(["cluster", "provision", "--target", "stray"]));
    // An app on worker1, and a registration whose node has no server (a ghost).
    ok(cli(dir).args(["app", "register", "--app", "hello", "--port", "5678"]));
    ok(cli(dir).args(["app", "deploy", "--app", "hello", "--target", "worker1"]));
    ok(cli(dir).args([
        "app",
        "register-instance",
        "--app",
        "hello",
        "--target",
        "worker1",
    ]));
    let ips: std::collections::BTreeMap<String, String> =
        common::servers(dir).await.into_iter().collect();
    let reg = common::etcd(dir, &ips["ctrl1"]).await;
    reg.put_raw(
        "/cluster/backends/hello/instances/gone1",
        r#"{"node":"gone1","ipv4":"192.0.2.9","port":5678}"#,
    )
    .await
    .unwrap();
    let server = serve(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    let view: serde_json::Value = loop {
        let (_, body) = http(&server.base, "GET", "/api/cluster", None, "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["checked_at"].is_number() {
            break v;
        }
        assert!(Instant::now() < deadline, "no health check yet: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(view["problems"].as_array().unwrap().is_empty(), "{view}");
    let node = |n: &str| {
        view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(node("worker1")["registered"], true);
    assert_eq!(node("worker1")["healthy"], true);
    assert_eq!(node("worker1")["orphan"], false);
    assert_eq!(node("ctrl1")["health"], "ssh, etcd");
    assert_eq!(node("stray")["orphan"], true);
    assert_eq!(node("stray")["registered"], false);
    // The mesh: what runs where, on which generation, touched by which run.
    let w = node("worker1");
    let overlay = reg.overlay_ip(&ips["worker1"]).await.unwrap().unwrap();
    assert_eq!(w["overlay"], overlay.as_str());
    assert_eq!(w["apps"], serde_json::json!(["hello (backend) :5678"]));
    let generation = common::on_node(
        dir,
        "worker1",
        &ips["worker1"],
        "cat /var/lib/nixos-standin/current",
    )
    .await;
    assert!(
        w["generation"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} (", generation.trim())),
        "{w}"
    );
    assert_eq!(w["last_run"][1], "app.register_instance", "{w}");
    let hello = view["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "hello")
        .unwrap();
    assert_eq!(hello["meta"]["publish"]["port"], 5678);
    let placed: Vec<(String, bool)> = hello["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i[0].as_str().unwrap().to_string(), i[3].as_bool().unwrap()))
        .collect();
    assert_eq!(
        placed,
        [("gone1".to_string(), false), ("worker1".to_string(), true)]
    );

    let profile = tempfile::tempdir().unwrap();
    let page = dom(profile.path(), &format!("{}/cluster", server.base));
    assert!(
        page.contains(r#"<tr class="orphan" data-node="stray">"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<tr class="" data-node="worker1">"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<span data-instance="gone1">gone1 192.0.2.9:5678 <b>ghost</b>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<td class="apps">hello (backend) :5678</td>"#),
        "{page}"
    );
    common::browser::screenshot(
        profile.path(),
        &format!("{}/cluster", server.base),
        "dashboard-cluster.png",
        1400,
        700,
    );
}
