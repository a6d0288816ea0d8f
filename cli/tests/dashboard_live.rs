//! The dashboard at scale and live, in real headless Chromium: a 20-node
//! `cluster up` as a grid, a run updating in place while it runs, and the
//! timeline of a retried step. Screenshots go to the test artifacts (and to
//! `NIX_INFRA_SCREENSHOTS`, for the README: scripts/screenshots.sh).

mod common;

use common::browser::{Browser, dom, screenshot};
use common::{Down, cli, cluster_repo, ok, serve};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_node_cluster_up_reads_as_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "hello from the grid");
    ok(cli(dir).args([
        "cluster",
        "up",
        "--ctrl",
        "1",
        "--workers",
        "18",
        "--ingress",
        "1",
        "--run-id",
        "up-20",
    ]));
    let server = serve(dir);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/runs/up-20", server.base);
    let page = dom(profile.path(), &url);
    let rows = page.matches("<tr data-node=").count();
    assert_eq!(rows, 20, "a row per node");
    for n in ["ctrl1", "worker1", "worker18", "ingress1"] {
        assert!(page.contains(&format!("<tr data-node=\"{n}\">")), "{n}");
    }
    let cells = page.matches("<td class=\"cell\"").count();
    let ok_cells = page
        .split("<td class=\"cell\"")
        .skip(1)
        .filter(|c| {
            c.split('>')
                .next()
                .unwrap_or("")
                .contains("data-status=\"succeeded\"")
        })
        .count();
    assert!(cells >= 20 * 5, "stages per node: {cells}");
    assert_eq!(ok_cells, cells, "every cell succeeded");
    assert!(
        !page.contains("<svg id=\"dag\""),
        "a node run shows the grid, not the DAG"
    );
    assert!(page.contains("<svg id=\"timeline\""));
    screenshot(profile.path(), &url, "dashboard-grid.png", 1400, 1100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_updates_in_place_and_a_retry_shows_as_two_bars() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).arg("init"));
    // Queued, not run: the pages open on a pending run.
    let queue = |id: &str| {
        ok(cli(dir).args([
            "runs",
            "start",
            "diag.chain",
            "--run-id",
            id,
            "--detach",
            "--input",
            r#"{"steps":4,"sleep_ms":150,"fail_step":2,"fail_times":1}"#,
        ]))
    };
    queue("first");
    let server = serve(dir);
    let b = Browser::start().await;
    let url = format!("sqlite://{}/.nix-infra/state.db", dir.display());
    let wait_for = |script: &'static str, want: serde_json::Value| {
        let b = &b;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while b.script(script).await != want {
                if Instant::now() > deadline {
                    let html = b.script("return document.documentElement.outerHTML").await;
                    panic!("the page never showed {want} for {script}:\n{html}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The runs list updates in place.
    b.go(&format!("{}/", server.base)).await;
    let listed = "return document.querySelector('#runs tbody tr .status').dataset.status";
    assert_eq!(b.script(listed).await, json!("pending"));
    b.script("window.sameDocument = 'yes'; return null").await;
    let worker = common::Worker::start(dir, &url);
    wait_for(listed, json!("succeeded")).await;
    assert_eq!(b.script("return window.sameDocument").await, json!("yes"));
    drop(worker);

    // So does a run's page, step by step.
    queue("live");
    b.go(&format!("{}/runs/live", server.base)).await;
    let status = "return document.querySelector('main p .status').dataset.status";
    assert_eq!(b.script(status).await, json!("pending"));
    b.script("window.sameDocument = 'yes'; return null").await;
    let _worker = common::Worker::start(dir, &url);
    wait_for(status, json!("succeeded")).await;
    // No reload: the same document, updated by live.js.
    assert_eq!(b.script("return window.sameDocument").await, json!("yes"));
    let updates = b
        .script("return Number(document.body.dataset.updates)")
        .await;
    assert!(updates.as_f64().unwrap() >= 1.0, "{updates}");
    // The retried step: two bars and the wait between them.
    let bars =
        "return document.querySelectorAll('#timeline g[data-step=\"step-2\"] rect.attempt').length";
    assert_eq!(b.script(bars).await, json!(2));
    let backoff =
        "return document.querySelectorAll('#timeline g[data-step=\"step-2\"] line.backoff').length";
    assert_eq!(b.script(backoff).await, json!(1));
    let first = "return document.querySelector('#timeline g[data-step=\"step-2\"] rect.attempt').dataset.status";
    assert_eq!(b.script(first).await, json!("failed"));
    b.close().await;
    let profile = tempfile::tempdir().unwrap();
    screenshot(
        profile.path(),
        &format!("{}/runs/live", server.base),
        "dashboard-timeline.png",
        1400,
        900,
    );
}

/// An open tab (an event stream that never ends by itself) does not keep
/// `serve` from stopping on SIGTERM.
#[test]
fn serve_stops_with_a_live_tab_open() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    ok(cli(dir.path()).arg("init"));
    let mut server = serve(dir.path());
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut tab = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        tab,
        "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    // The stream is open once its first event has come.
    let mut lines = BufReader::new(tab.try_clone().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l == "event: changed")
    );
    let pid = rustix::process::Pid::from_raw(server.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let started = Instant::now();
    let status = server.child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(status.success(), "{status}");
    drop(tab);
}
