//! Two executors racing for one run, a stale owner fenced off, and secrets kept out of storage.

use testkit::{on_both_backends, stores as common};

use engine::{
    AttemptStatus, EngineConfig, EngineError, Observer, Plan, Registry, RetryPolicy, RunEvent,
    RunStatus, Secret, StepError, StepSpec, Store, Workflow,
};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

on_both_backends!(
    two_executors_race_and_only_one_proceeds,
    a_stale_owner_is_fenced_off,
);

fn owner_config(owner: &str, ttl_ms: u64, heartbeat_ms: u64) -> EngineConfig {
    EngineConfig {
        owner: owner.into(),
        lease_ttl: Duration::from_millis(ttl_ms),
        heartbeat: Duration::from_millis(heartbeat_ms),
        ..common::fast_config()
    }
}

async fn two_executors_race_and_only_one_proceeds(store: Arc<dyn Store>) {
    let a = common::engine(store.clone(), workflows::registry())
        .with_config(owner_config("A", 1_000, 100));
    let b = common::engine(store, workflows::registry()).with_config(owner_config("B", 1_000, 100));
    let id = a
        .create("diag.chain", json!({"steps": 10, "sleep_ms": 150}), None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    let (ra, rb) = tokio::join!(
        a.execute(&id, CancellationToken::new(), Observer::none()),
        b.execute(&id, CancellationToken::new(), Observer::none()),
    );
    let (winner, loser) = match (&ra, &rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("exactly one executor must proceed, got {other:?}"),
    };
    assert_eq!(winner.status, RunStatus::Succeeded);
    assert!(
        matches!(loser, EngineError::Busy { .. }),
        "the loser must see a live owner, got {loser}"
    );
    let state = a.load(&id).await.unwrap();
    assert_eq!(state.attempts.len(), 10, "every step ran exactly once");
    assert!(
        state
            .attempts
            .iter()
            .all(|x| x.status == AttemptStatus::Succeeded)
    );
}

async fn a_stale_owner_is_fenced_off(store: Arc<dyn Store>) {
    let gate = Arc::new(Notify::new());
    let wf = {
        let gate = gate.clone();
        Workflow::new("t.gate", 1)
            .planner(|_| {
                Ok(Plan::new(vec![
                    StepSpec::new("slow", "gate").retry(RetryPolicy::none()),
                    StepSpec::new("after", "mark").after("slow"),
                ]))
            })
            .step("gate", move |ctx| {
                let gate = gate.clone();
                async move {
                    // The first owner's attempt hangs until the test opens the gate.
                    if ctx.attempt == 1 {
                        gate.notified().await;
                    }
                    Ok(json!({"attempt": ctx.attempt}))
                }
            })
            .step(
                "mark",
                |ctx| async move { Ok(json!({"after": ctx.attempt})) },
            )
    };
    let mut registry = Registry::new();
    registry.register(wf);
    // A's lease lapses after 300 ms because it never renews it in time.
    let a =
        common::engine(store.clone(), registry.clone()).with_config(owner_config("A", 300, 60_000));
    let b = common::engine(store, registry).with_config(owner_config("B", 5_000, 100));
    let id = a
        .create("t.gate", json!({}), None)
        .await
        .unwrap()
        .record()
        .id
        .clone();

    let (observer, mut events) = Observer::channel();
    let run_a = {
        let a = a.clone();
        let id = id.clone();
        tokio::spawn(async move { a.execute(&id, CancellationToken::new(), observer).await })
    };
    loop {
        match events.recv().await {
            Some(RunEvent::StepStarted { step, .. }) if step == "slow" => break,
            Some(_) => {}
            None => panic!("A never started the step"),
        }
    }
    // B waits for A's lease to lapse, takes the run over and finishes it.
    let out_b = b
        .execute(&id, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out_b.status, RunStatus::Succeeded);
    // Now A's attempt returns; its write carries a stale epoch and is rejected.
    gate.notify_one();
    let out_a = run_a.await.unwrap();
    assert!(
        matches!(out_a, Err(EngineError::LeaseLost(_))),
        "A must learn it lost the lease, got {out_a:?}"
    );
    let state = b.load(&id).await.unwrap();
    assert_eq!(state.run.status, RunStatus::Succeeded);
    let slow: Vec<_> = state.attempts.iter().filter(|x| x.step == "slow").collect();
    assert_eq!(slow.len(), 2);
    assert_eq!(
        slow[0].status,
        AttemptStatus::Abandoned,
        "A's late result was not written"
    );
    assert_eq!(slow[1].status, AttemptStatus::Succeeded);
    assert_eq!(slow[1].output, Some(json!({"attempt": 2})));
}

#[derive(Serialize)]
struct Credentials {
    user: String,
    password: Secret<String>,
}

fn leaky_workflow(secret: String) -> Workflow {
    Workflow::new("t.leaky", 1)
        .planner(|_| {
            Ok(Plan::new(vec![StepSpec::new("mint", "mint").retry(
                RetryPolicy {
                    max_attempts: 2,
                    initial_backoff_ms: 1,
                    ..RetryPolicy::default()
                },
            )]))
        })
        .step("mint", move |ctx| {
            let password = Secret::new(secret.clone());
            async move {
                // Every careless way a secret could leak: a log line, an error, an output.
                ctx.log
                    .info(format!("minted password {password} ({password:?})"));
                if ctx.attempt == 1 {
                    return Err(StepError::retryable(format!("upload of {password} failed")));
                }
                Ok(Credentials {
                    user: "admin".into(),
                    password,
                })
            }
        })
}

async fn run_leaky(store: Arc<dyn Store>, secret: &str) -> String {
    let mut registry = Registry::new();
    registry.register(leaky_workflow(secret.to_string()));
    let engine = common::engine(store, registry);
    let (id, out) = common::run_to_end(&engine, "t.leaky", json!({})).await;
    assert_eq!(out.status, RunStatus::Succeeded);
    let logs = engine.logs(&id, None).await.unwrap();
    assert_eq!(logs.len(), 2, "both attempts logged");
    assert!(logs[0].line.contains("[redacted]"));
    id
}

#[tokio::test]
async fn secrets_never_reach_sqlite_files() {
    let secret = format!("pw-{}", engine::new_run_id());
    let (store, guard) = common::sqlite().await;
    let dump_store = store.clone();
    run_leaky(Arc::new(store), &secret).await;
    let dump = dump_store.dump_text().await.unwrap();
    assert!(
        dump.contains("[redacted]"),
        "the dump must cover outputs, errors and logs"
    );
    assert!(dump.contains("admin"));
    assert!(!dump.contains(&secret));
    // Not in any byte of the database files either (main file, WAL, shm).
    let common::Guard::Sqlite(dir) = &guard else {
        unreachable!()
    };
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let needle = secret.as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }
}

#[tokio::test]
async fn secrets_never_reach_postgres() {
    let secret = format!("pw-{}", engine::new_run_id());
    let (store, _guard) = common::postgres().await;
    let dump_store = store.clone();
    run_leaky(Arc::new(store), &secret).await;
    let dump = dump_store.dump_text().await.unwrap();
    assert!(dump.contains("[redacted]") && dump.contains("admin"));
    assert!(!dump.contains(&secret));
}
