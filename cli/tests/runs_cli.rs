//! The `nix-infra runs` commands as users and CI call them, against real SQLite and Postgres.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

/// `nix-infra` with the database chosen and a short lease, so a killed run is taken over fast.
fn cli(url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL").env("NO_COLOR", "1").args([
        "--database-url",
        url,
        "--lease-ttl",
        "2",
    ]);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn nix-infra")
}

fn json_stdout(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

fn show(url: &str, id: &str) -> Value {
    let out = run(cli(url).args(["runs", "show", id, "--output", "json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_stdout(&out)
}

/// Starts a 20-step chain, SIGKILLs the process mid-run, resumes from a second process.
fn kill_and_resume(url: &str) {
    let mut child = cli(url)
        .args(["runs", "start", "diag.chain", "--run-id", "crash-1"])
        .args(["--input", r#"{"steps":20,"sleep_ms":120}"#])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the child reports five finished steps, then kill it hard.
    let mut done = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().trim_start().starts_with('✓') {
            done += 1;
            if done == 5 {
                break;
            }
        }
    }
    assert_eq!(done, 5, "the child stopped reporting before five steps");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let before = show(url, "crash-1");
    assert_eq!(
        before["status"], "running",
        "a killed run stays running until taken over"
    );
    let done_before: Vec<String> = before["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "succeeded")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        done_before.len() >= 5 && done_before.len() < 20,
        "{done_before:?}"
    );

    let out = run(cli(url).args(["runs", "resume", "crash-1", "--output", "json"]));
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_stdout(&out)["status"], "succeeded");

    let after = show(url, "crash-1");
    assert_eq!(after["status"], "succeeded");
    let steps = after["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 20);
    for s in steps {
        assert_eq!(s["status"], "succeeded", "{s}");
        let attempts = s["attempts"].as_array().unwrap();
        let ok = attempts
            .iter()
            .filter(|a| a["status"] == "succeeded")
            .count();
        assert_eq!(ok, 1, "each step succeeds exactly once: {s}");
        if done_before.iter().any(|d| d == s["name"].as_str().unwrap()) {
            assert_eq!(
                attempts.len(),
                1,
                "completed before the kill, so never re-run: {s}"
            );
        }
    }
}

#[test]
fn kill_9_and_resume_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_and_resume(&testkit::sqlite_url(dir.path()));
}

#[test]
fn kill_9_and_resume_on_postgres() {
    let pg = testkit::Postgres::start().unwrap();
    kill_and_resume(&pg.fresh_database().unwrap());
}

#[test]
fn json_shapes_that_scripts_rely_on() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let out = run(cli(&url)
        .args(["runs", "start", "diag.chain", "--output", "json"])
        .args(["--input", r#"{"steps":3,"fail_step":2,"fail_times":1}"#]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = json_stdout(&out);
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(started["status"], "succeeded");

    let detail = show(&url, &id);
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["workflow"], "diag.chain");
    assert_eq!(detail["status"], "succeeded");
    let steps = detail["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["step-1", "step-2", "step-3"]);
    let step2 = &steps[1]["attempts"];
    assert_eq!(step2.as_array().unwrap().len(), 2);
    assert_eq!(step2[0]["number"], 1);
    assert_eq!(step2[0]["status"], "failed");
    assert_eq!(step2[0]["error"], "injected failure 1 of 1");
    assert_eq!(step2[1]["status"], "succeeded");
    for key in ["started_at", "finished_at"] {
        let t = step2[1][key].as_str().unwrap();
        assert!(
            t.ends_with('Z') && t.contains('T'),
            "{key} is not RFC 3339: {t}"
        );
    }

    let out = run(cli(&url).args(["runs", "list", "--output", "json"]));
    let list = json_stdout(&out);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    for key in ["id", "workflow", "status", "created_at"] {
        assert!(list[0].get(key).is_some(), "list entry lacks {key}");
    }

    let out = run(cli(&url).args(["runs", "logs", &id]));
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("step-3#1 info  link 3 done"), "{logs}");

    let out = run(cli(&url).args(["runs", "graph", &id]));
    let graph = String::from_utf8_lossy(&out.stdout);
    assert!(graph.starts_with("flowchart TD"));
    assert!(
        graph.contains("s0 --> s1") && graph.contains(":::succeeded"),
        "{graph}"
    );
}

#[test]
fn fork_and_cancel_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let out = run(cli(&url)
        .args(["runs", "start", "diag.chain", "--run-id", "base"])
        .args(["--input", r#"{"steps":4}"#]));
    assert!(out.status.success());
    let out = run(cli(&url).args([
        "runs",
        "fork",
        "base",
        "--from-step",
        "step-3",
        "--run-id",
        "again",
        "--output",
        "json",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forked = show(&url, "again");
    let attempts = |i: usize| forked["steps"][i]["attempts"][0]["status"].clone();
    assert_eq!(attempts(0), "copied");
    assert_eq!(attempts(1), "copied");
    assert_eq!(attempts(2), "succeeded");
    assert_eq!(attempts(3), "succeeded");

    // Cancelling a finished run changes nothing and says so.
    let out = run(cli(&url).args(["runs", "cancel", "base", "--output", "json"]));
    assert!(out.status.success());
    assert_eq!(json_stdout(&out)["cancel"], "succeeded");
}

#[test]
fn a_failing_run_exits_1_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let out = run(cli(&url)
        .args(["runs", "start", "diag.chain", "--run-id", "flaky"])
        .args([
            "--input",
            r#"{"steps":3,"fail_step":2,"fail_times":3,"max_attempts":2}"#,
        ]));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("run flaky failed"), "{stdout}");
    assert!(stdout.contains("nix-infra runs resume flaky"), "{stdout}");
    // The third attempt (first of the resume) still fails; the fourth succeeds.
    let out = run(cli(&url).args(["runs", "resume", "flaky"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail = show(&url, "flaky");
    assert_eq!(detail["steps"][1]["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(detail["steps"][0]["attempts"].as_array().unwrap().len(), 1);
}

fn no_state_in(dir: &Path) -> bool {
    !dir.join(".nix-infra").exists()
}

#[test]
fn bad_input_fails_clearly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().to_str().unwrap();
    let default_db = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("DATABASE_URL").args(["-d", wd]).args(args);
        run(&mut cmd)
    };
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["runs", "start", "diag.chain", "--input", "{not json"],
            2,
            "--input is not valid JSON",
        ),
        (
            &["runs", "start", "no.such"],
            2,
            "unknown workflow `no.such` (known: app.deploy, app.register,",
        ),
        (
            &["runs", "start", "diag.chain", "--input", r#"{"steps":0}"#],
            2,
            "the plan has no steps",
        ),
        (
            &["runs", "start", "diag.chain", "--input", r#"{"stpes":2}"#],
            2,
            "unknown field `stpes`",
        ),
        (
            &[
                "runs",
                "start",
                "diag.chain",
                "--input",
                r#"{"steps":2}"#,
                "--run-id",
                "a b",
            ],
            2,
            "invalid run id `a b`",
        ),
        (
            &["runs", "start", "diag.chain", "--lease-ttl", "0"],
            2,
            "--lease-ttl",
        ),
    ];
    for (args, code, message) in cases {
        let out = default_db(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(no_state_in(dir.path()), "{args:?} left state behind");
    }

    let out = run(Command::new(BIN).args(["--database-url", "mysql://x/y", "runs", "list"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme `mysql`"));

    let port = testkit::free_port().unwrap();
    let url = format!("postgres://nix:hunter2@127.0.0.1:{port}/state");
    let out = run(Command::new(BIN).args(["--database-url", &url, "runs", "list"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot open database") && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");

    let out = default_db(&["runs", "show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run with id `nope`"));
}

#[test]
fn the_default_database_lives_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(BIN)
        .env_remove("DATABASE_URL")
        .args([
            "-d",
            dir.path().to_str().unwrap(),
            "runs",
            "start",
            "diag.fanout",
        ])
        .args(["--input", r#"{"steps":3}"#]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join(".nix-infra/state.db").is_file());
}

#[test]
fn resume_failed_picks_up_every_failed_run_for_ci() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    for id in ["f1", "f2"] {
        let out = run(cli(&url)
            .args(["runs", "start", "diag.chain", "--run-id", id])
            .args([
                "--input",
                r#"{"steps":2,"fail_step":1,"fail_times":2,"max_attempts":2}"#,
            ]));
        assert_eq!(out.status.code(), Some(1));
    }
    let ok = run(cli(&url).args(["runs", "start", "diag.fanout", "--input", r#"{"steps":2}"#]));
    assert!(ok.status.success());
    let out = run(cli(&url).args(["runs", "resume", "--failed", "--workflow", "diag.chain"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 resumed, 0 still not succeeded"));
    for id in ["f1", "f2"] {
        assert_eq!(show(&url, id)["status"], "succeeded");
    }
    let again = run(cli(&url).args(["runs", "resume", "--failed"]));
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no failed or abandoned runs"));
    let bad = run(cli(&url).args(["runs", "resume"]));
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a run id or --failed is required"
    );
}
