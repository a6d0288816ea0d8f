//! Every run as one OpenTelemetry trace, sent to a real OTLP receiver.

mod common;

use common::otlp::{Receiver, Span};
use common::{Down, cli, kill_9_after, last_json, ok};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn traced(dir: &Path, rx: &Receiver) -> Command {
    let mut c = cli(dir);
    c.env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_SERVICE_NAME", "nix-infra-test");
    c
}

/// Waits until the receiver holds a span that `want` accepts.
fn wait_span(rx: &Receiver, what: &str, want: impl Fn(&Span) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rx.spans().iter().any(&want) {
        assert!(
            Instant::now() < deadline,
            "no span for {what}: {:#?}",
            rx.spans()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_kill_resume_is_one_trace_with_every_steps_span() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let input = r#"{"steps":6,"sleep_ms":150,"fail_step":2,"fail_times":1}"#;
    let run = |c: &mut Command| {
        c.args([
            "runs",
            "start",
            "diag.chain",
            "--run-id",
            "tr-1",
            "--input",
            input,
        ]);
    };
    let mut first = traced(dir, &rx);
    run(&mut first);
    // Killed once step-3's span has reached the receiver: it was sent as the step ended.
    kill_9_after(&mut first, "✓ step-3", || {
        wait_span(&rx, "step-3", |sp| sp.name == "step-3")
    });
    let partial: BTreeSet<String> = rx.spans().iter().map(|s| s.name.clone()).collect();
    assert!(
        !partial.contains("step-6"),
        "killed before the end: {partial:?}"
    );

    ok(traced(dir, &rx).args(["runs", "resume", "tr-1"]));
    let trace = ok(cli(dir).args(["runs", "trace", "tr-1"]))
        .trim()
        .to_string();
    assert_eq!(trace.len(), 32, "{trace}");
    wait_span(&rx, "the resumed execution", |s| {
        s.name == "execute diag.chain"
    });

    let spans = rx.spans();
    assert!(
        spans.iter().all(|s| s.trace_id == trace),
        "one trace: {spans:#?}"
    );
    assert!(spans.iter().all(|s| s.service == "nix-infra-test"));
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for k in 1..=6 {
        assert!(
            names.contains(format!("step-{k}").as_str()),
            "step-{k} missing: {names:?}"
        );
    }
    // The root was sent when the first execution started, so it survived the kill;
    // the resume's execution and every step hang under it.
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "run diag.chain")
        .collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    assert!(roots[0].parent.is_empty());
    let root = &roots[0].span_id;
    let resumed = spans
        .iter()
        .find(|s| s.name == "execute diag.chain")
        .unwrap();
    assert_eq!(&resumed.parent, root);
    assert_eq!(resumed.attributes["outcome"], "succeeded");
    for s in spans.iter().filter(|s| s.name.starts_with("step-")) {
        assert_eq!(&s.parent, root, "{s:?}");
        assert_eq!(s.attributes["workflow"], "diag.chain");
        assert_eq!(s.attributes["run.id"], "tr-1");
        assert_eq!(s.attributes["step"], s.name);
        assert!(s.attributes.contains_key("attempt") && s.attributes.contains_key("outcome"));
    }
    // step-2 failed once: that attempt carries the retry as an event.
    let retried = spans
        .iter()
        .find(|s| s.name == "step-2" && s.attributes["attempt"] == "1")
        .unwrap();
    assert_eq!(retried.attributes["outcome"], "retrying");
    assert!(retried.attributes.contains_key("error"));
    assert_eq!(retried.events, ["retry"]);
    let second = spans
        .iter()
        .find(|s| s.name == "step-2" && s.attributes["attempt"] == "2")
        .unwrap();
    assert_eq!(second.attributes["outcome"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_spans_carry_node_and_server_and_never_a_secret() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    ok(cli(dir).arg("init"));
    ok(cli(dir).args(["sandbox", "up"]));
    let out =
        ok(traced(dir, &rx).args(["--output", "json", "fleet", "provision", "--target", "f1"]));
    let provision = last_json(&out)["id"].as_str().unwrap().to_string();
    let out = traced(dir, &rx)
        .args([
            "--output",
            "json",
            "fleet",
            "cmd",
            "--target",
            "f1",
            "--env-vars",
            "TOKEN=sekrit-4471",
        ])
        .arg("echo token=$TOKEN >&2; exit 4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let cmd = last_json(&String::from_utf8_lossy(&out.stdout))["id"]
        .as_str()
        .unwrap()
        .to_string();

    let spans = rx.spans();
    let create = spans
        .iter()
        .find(|s| s.name == "create/f1")
        .expect("create/f1");
    assert_eq!(create.attributes["node"], "f1");
    assert!(
        create.attributes["hcloud.server.id"]
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(create.attributes["run.id"], provision);
    let failed = spans.iter().find(|s| s.name == "cmd/f1").expect("cmd/f1");
    assert_eq!(failed.attributes["run.id"], cmd);
    assert_eq!(failed.attributes["outcome"], "failed");
    assert_eq!(failed.attributes["error"], "exit 4: token=[redacted]");
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(!v.contains("sekrit-4471"), "{} {k}={v}", s.name);
        }
    }
}
