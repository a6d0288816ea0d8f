//! `nix-infra serve` in real headless Chromium (Debian's `chromium`), plus its
//! API's token check over plain HTTP.

mod common;

use common::{Down, cli, http, ok, serve};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium, headless, kept off every network but loopback's pages.
fn chromium(profile: &Path) -> Command {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null())
    .stderr(Stdio::null());
    c
}

/// The page's DOM after its scripts ran.
fn dom(profile: &Path, url: &str) -> String {
    let out = chromium(profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn artifacts() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

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
    let out = chromium(profile.path())
        .arg(format!(
            "--screenshot={}",
            artifacts().join("dashboard-cluster.png").display()
        ))
        .args(["--window-size=1280,600"])
        .arg(format!("{}/cluster", server.base))
        .output()
        .unwrap();
    assert!(out.status.success());
}
