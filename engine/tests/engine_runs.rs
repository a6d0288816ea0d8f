//! Engine behaviour on real SQLite and Postgres: retries, timeouts, failures, cancel, fork, plans.

use testkit::{on_both_backends, stores as common};

use engine::inspect::step_views;
use engine::{
    AttemptStatus, EngineError, Observer, Plan, PlanError, Registry, RetryPolicy, RunEvent,
    RunFilter, RunStatus, StepError, StepSpec, StepStatus, Store, Workflow,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn registry_with(wf: Workflow) -> Registry {
    let mut r = workflows::registry();
    r.register(wf);
    r
}

fn attempts_of(state: &engine::RunState, step: &str) -> Vec<engine::AttemptRecord> {
    state
        .attempts
        .iter()
        .filter(|a| a.step == step)
        .cloned()
        .collect()
}

on_both_backends!(
    retries_back_off_up_to_the_cap_and_stop_at_max_attempts,
    timeouts_are_retryable,
    permanent_errors_are_not_retried,
    independent_branches_finish_after_a_failure,
    concurrency_is_bounded,
    cancel_stops_the_run_and_resume_finishes_it,
    fork_reruns_from_a_step_and_keeps_the_rest,
    invalid_plans_write_nothing,
    start_is_idempotent_by_run_id,
);

async fn retries_back_off_up_to_the_cap_and_stop_at_max_attempts(store: Arc<dyn Store>) {
    let policy = RetryPolicy {
        max_attempts: 4,
        initial_backoff_ms: 50,
        multiplier: 4.0,
        max_backoff_ms: 100,
        jitter: 0.0,
    };
    let wf = Workflow::new("t.flaky", 1)
        .planner(move |_| {
            Ok(Plan::new(vec![
                StepSpec::new("flaky", "flaky").retry(policy.clone()),
            ]))
        })
        .step("flaky", |ctx| async move {
            Err::<(), _>(StepError::retryable(format!("boom {}", ctx.attempt)))
        });
    let engine = common::engine(store, registry_with(wf));
    let run = engine.create("t.flaky", json!({}), None).await.unwrap();
    let id = run.record().id.clone();
    let out = engine
        .execute(&id, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .unwrap()
            .contains("step `flaky` failed: boom 4 (after 4 attempts)")
    );
    let state = engine.load(&id).await.unwrap();
    let attempts = attempts_of(&state, "flaky");
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| a.status == AttemptStatus::Failed));
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|w| w[1].started_at - w[0].finished_at.unwrap())
        .collect();
    // 50 ms, then 200 ms capped to 100 ms, then 800 ms capped to 100 ms.
    assert!(gaps[0] >= 50, "first backoff too short: {gaps:?}");
    assert!(
        gaps[1] >= 100 && gaps[2] >= 100,
        "capped backoff too short: {gaps:?}"
    );
    assert!(gaps[2] < 700, "backoff was not capped: {gaps:?}");
    // The last attempt says no retry follows; the earlier ones recorded when theirs was due.
    assert!(attempts[..3].iter().all(|a| a.retry_at.is_some()));
    assert_eq!(attempts[3].retry_at, None);
}

async fn timeouts_are_retryable(store: Arc<dyn Store>) {
    let wf = Workflow::new("t.slow", 1)
        .planner(|_| {
            Ok(Plan::new(vec![
                StepSpec::new("slow", "slow")
                    .timeout(Duration::from_millis(100))
                    .retry(RetryPolicy {
                        max_attempts: 2,
                        initial_backoff_ms: 10,
                        ..RetryPolicy::default()
                    }),
            ]))
        })
        .step("slow", |ctx| async move {
            if ctx.attempt == 1 {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok(json!({"attempt": ctx.attempt}))
        });
    let engine = common::engine(store, registry_with(wf));
    let (id, out) = common::run_to_end(&engine, "t.slow", json!({})).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    let attempts = attempts_of(&engine.load(&id).await.unwrap(), "slow");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::TimedOut);
    assert!(attempts[0].error.as_deref().unwrap().contains("timed out"));
    assert_eq!(attempts[1].status, AttemptStatus::Succeeded);
    assert_eq!(attempts[1].output, Some(json!({"attempt": 2})));
}

async fn permanent_errors_are_not_retried(store: Arc<dyn Store>) {
    let wf = Workflow::new("t.bad", 1)
        .planner(|_| Ok(Plan::new(vec![StepSpec::new("bad", "bad")])))
        .step("bad", |_| async {
            Err::<(), _>(StepError::permanent("syntax error in node1.nix"))
        });
    let engine = common::engine(store, registry_with(wf));
    let (id, out) = common::run_to_end(&engine, "t.bad", json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.failed_steps.get("bad").map(String::as_str),
        Some("syntax error in node1.nix (after 1 attempt)")
    );
    let state = engine.load(&id).await.unwrap();
    assert_eq!(attempts_of(&state, "bad").len(), 1);
    assert_eq!(state.run.status, RunStatus::Failed);
}

async fn independent_branches_finish_after_a_failure(store: Arc<dyn Store>) {
    let wf = Workflow::new("t.branches", 1)
        .planner(|_| {
            Ok(Plan::new(vec![
                StepSpec::new("a", "fail"),
                StepSpec::new("b", "ok").after("a"),
                StepSpec::new("c", "slow_ok"),
                StepSpec::new("d", "ok").after("c"),
                StepSpec::new("e", "ok").after("b").after("d"),
            ]))
        })
        .step("fail", |_| async {
            Err::<(), _>(StepError::permanent("a broke"))
        })
        .step("ok", |_| async { Ok(()) })
        .step("slow_ok", |_| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        });
    let engine = common::engine(store, registry_with(wf));
    let (id, out) = common::run_to_end(&engine, "t.branches", json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    let error = out.error.unwrap();
    assert!(error.contains("step `a` failed: a broke"), "{error}");
    assert!(error.contains("2 dependent step(s) not run"), "{error}");
    let state = engine.load(&id).await.unwrap();
    let status: Vec<(String, StepStatus)> = step_views(&state)
        .into_iter()
        .map(|v| (v.name, v.status))
        .collect();
    assert_eq!(
        status,
        vec![
            ("a".into(), StepStatus::Failed),
            ("b".into(), StepStatus::Blocked),
            ("c".into(), StepStatus::Succeeded),
            ("d".into(), StepStatus::Succeeded),
            ("e".into(), StepStatus::Blocked),
        ]
    );
}

async fn concurrency_is_bounded(store: Arc<dyn Store>) {
    let mut config = common::fast_config();
    config.concurrency = 4;
    let engine = common::engine(store, workflows::registry()).with_config(config);
    let (id, out) =
        common::run_to_end(&engine, "diag.fanout", json!({"steps": 16, "sleep_ms": 60})).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    let state = engine.load(&id).await.unwrap();
    let spans: Vec<(i64, i64)> = state
        .attempts
        .iter()
        .filter(|a| a.step.starts_with("branch-"))
        .map(|a| (a.started_at, a.finished_at.unwrap()))
        .collect();
    assert_eq!(spans.len(), 16);
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(s2, e2)| s2 <= s && s < e2).count())
        .max()
        .unwrap();
    assert!(most <= 4, "{most} attempts overlapped with a bound of 4");
    assert!(most >= 2, "branches did not run concurrently");
}

async fn cancel_stops_the_run_and_resume_finishes_it(store: Arc<dyn Store>) {
    let engine = common::engine(store, workflows::registry());
    let id = engine
        .create("diag.chain", json!({"steps": 8, "sleep_ms": 100}), None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    let (observer, mut events) = Observer::channel();
    let running = {
        let engine = engine.clone();
        let id = id.clone();
        tokio::spawn(async move {
            engine
                .execute(&id, CancellationToken::new(), observer)
                .await
        })
    };
    // Cancel from "another process": through the store, once two steps are done.
    let mut done = 0;
    while let Some(e) = events.recv().await {
        if matches!(e, RunEvent::StepSucceeded { .. }) {
            done += 1;
            if done == 2 {
                engine.cancel(&id).await.unwrap();
                break;
            }
        }
    }
    let out = running.await.unwrap().unwrap();
    assert_eq!(out.status, RunStatus::Cancelled);
    let state = engine.load(&id).await.unwrap();
    assert_eq!(state.run.status, RunStatus::Cancelled);
    let succeeded_before: Vec<String> = state
        .attempts
        .iter()
        .filter(|a| a.status == AttemptStatus::Succeeded)
        .map(|a| a.step.clone())
        .collect();
    assert!(succeeded_before.len() >= 2 && succeeded_before.len() < 8);
    let views = step_views(&state);
    assert!(
        views
            .iter()
            .any(|v| v.status == StepStatus::Pending || v.status == StepStatus::Cancelled)
    );

    let out = engine
        .execute(&id, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Succeeded);
    let state = engine.load(&id).await.unwrap();
    for step in &succeeded_before {
        assert_eq!(attempts_of(&state, step).len(), 1, "{step} ran again");
    }
    for v in step_views(&state) {
        let ok = v
            .attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Succeeded)
            .count();
        assert_eq!(ok, 1, "{} must succeed exactly once", v.name);
    }
    let last = attempts_of(&state, "step-8");
    assert_eq!(
        last.last().unwrap().output,
        Some(json!({"index": 8, "sum": 36}))
    );
}

async fn fork_reruns_from_a_step_and_keeps_the_rest(store: Arc<dyn Store>) {
    let engine = common::engine(store, workflows::registry());
    let parent = engine
        .create("diag.chain", json!({"steps": 5}), None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    engine
        .execute(&parent, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    let child = engine
        .fork(&parent, "step-3", Some("forked-1".into()))
        .await
        .unwrap();
    assert_eq!(child.id, "forked-1");
    let out = engine
        .execute("forked-1", CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Succeeded);
    let state = engine.load("forked-1").await.unwrap();
    assert_eq!(
        state.run.forked_from,
        Some((parent.clone(), "step-3".into()))
    );
    for step in ["step-1", "step-2"] {
        let a = attempts_of(&state, step);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].status, AttemptStatus::Copied);
        assert_eq!(a[0].copied_from.as_deref(), Some(parent.as_str()));
    }
    for step in ["step-3", "step-4", "step-5"] {
        let a = attempts_of(&state, step);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].status, AttemptStatus::Succeeded);
    }
    // The copied outputs fed the re-run: 1+2+3+4+5.
    assert_eq!(
        attempts_of(&state, "step-5")[0].output,
        Some(json!({"index": 5, "sum": 15}))
    );
    assert!(matches!(
        engine.fork(&parent, "nope", None).await,
        Err(EngineError::UnknownStep { .. })
    ));
}

async fn invalid_plans_write_nothing(store: Arc<dyn Store>) {
    let cases: Vec<(&str, Vec<StepSpec>)> = vec![
        ("empty", vec![]),
        (
            "cycle",
            vec![
                StepSpec::new("x", "ok").after("z"),
                StepSpec::new("y", "ok").after("x"),
                StepSpec::new("z", "ok").after("y"),
            ],
        ),
        ("unknown", vec![StepSpec::new("x", "ok").after("ghost")]),
        (
            "dup",
            vec![StepSpec::new("twin", "ok"), StepSpec::new("twin", "ok")],
        ),
        ("kind", vec![StepSpec::new("x", "no-such-kind")]),
    ];
    let mut registry = workflows::registry();
    for (name, steps) in &cases {
        let steps = steps.clone();
        registry.register(
            Workflow::new(format!("t.{name}"), 1)
                .planner(move |_| Ok(Plan::new(steps.clone())))
                .step("ok", |_| async { Ok(()) }),
        );
    }
    let engine = common::engine(store, registry);
    let err = |name: &str| {
        let engine = engine.clone();
        let name = format!("t.{name}");
        async move { engine.create(&name, json!({}), None).await.unwrap_err() }
    };
    assert!(matches!(
        err("empty").await,
        EngineError::Plan(PlanError::Empty)
    ));
    let cycle = err("cycle").await.to_string();
    assert!(
        cycle.contains("cycle") && cycle.contains('x') && cycle.contains('z'),
        "{cycle}"
    );
    assert!(err("unknown").await.to_string().contains("x -> ghost"));
    assert!(err("dup").await.to_string().contains("twin"));
    assert!(err("kind").await.to_string().contains("x (no-such-kind)"));
    let bad_input = engine
        .create("diag.chain", json!({"steps": 3, "fail_step": 9}), None)
        .await
        .unwrap_err();
    assert!(bad_input.to_string().contains("fail_step 9"), "{bad_input}");
    assert!(matches!(
        engine.create("no.such", json!({}), None).await,
        Err(EngineError::UnknownWorkflow { .. })
    ));
    assert!(matches!(
        engine
            .create("diag.chain", json!({"steps": 1}), Some("bad id!".into()))
            .await,
        Err(EngineError::InvalidRunId(_))
    ));
    assert!(engine.list(&RunFilter::default()).await.unwrap().is_empty());
}

async fn start_is_idempotent_by_run_id(store: Arc<dyn Store>) {
    let engine = common::engine(store, workflows::registry());
    let input = json!({"steps": 2});
    let first = engine
        .create("diag.chain", input.clone(), Some("ci-42".into()))
        .await
        .unwrap();
    assert!(matches!(first, engine::Created::New(_)));
    engine
        .execute("ci-42", CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    let again = engine
        .create("diag.chain", input, Some("ci-42".into()))
        .await
        .unwrap();
    let engine::Created::Existing(run) = again else {
        panic!("expected the existing run")
    };
    assert_eq!(run.status, RunStatus::Succeeded);
    let conflict = engine
        .create("diag.chain", json!({"steps": 3}), Some("ci-42".into()))
        .await
        .unwrap_err();
    assert!(matches!(conflict, EngineError::RunIdConflict { .. }));
    assert_eq!(engine.list(&RunFilter::default()).await.unwrap().len(), 1);
}
