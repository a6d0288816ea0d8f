//! A run waiting for its resource lock, on a real SQLite store: what it
//! executes once the lock is free is the run as it is then, not as it was
//! read before the wait.

use engine::{Engine, RunStatus};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use worker::execute_locked;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_it_waits_for_its_lock_ends_cancelled_unexecuted() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage::connect(&testkit::sqlite_url(dir.path()))
        .await
        .unwrap();
    let engine = Engine::new(Arc::new(store), workflows::registry());
    let node = vec!["node/web1".to_string()];
    let chain = serde_json::json!({"steps": 2});
    let holder = engine
        .create_with(
            "diag.chain",
            chain.clone(),
            Some("holder".into()),
            node.clone(),
        )
        .await
        .unwrap();
    let waiter = engine
        .create_with("diag.chain", chain, Some("waiter".into()), node.clone())
        .await
        .unwrap();
    assert_eq!(holder.record().resources, node);
    let lease_ms = engine.config().lease_ttl.as_millis() as i64;
    let now = engine::now_millis();
    // `holder` holds the node, as a run executing elsewhere does.
    assert_eq!(
        engine
            .store()
            .try_lock("holder", &node, now, lease_ms)
            .await
            .unwrap(),
        None
    );

    // `waiter` is read, then waits for the node.
    let read = engine.load(&waiter.record().id).await.unwrap();
    assert_eq!(read.run.status, RunStatus::Pending);
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move {
            execute_locked(
                &engine,
                read,
                CancellationToken::new(),
                CancellationToken::new(),
                engine::Observer::none(),
            )
            .await
        })
    };
    // Another process cancels it: it never started, so it is cancelled at once.
    engine.cancel("waiter").await.unwrap();
    assert_eq!(
        engine.load("waiter").await.unwrap().run.status,
        RunStatus::Cancelled
    );
    engine.store().unlock("holder").await.unwrap();

    let outcome = waiting.await.unwrap().unwrap().expect("not stopped");
    assert_eq!(outcome.status, RunStatus::Cancelled, "{outcome:?}");
    let after = engine.load("waiter").await.unwrap();
    assert_eq!(after.run.status, RunStatus::Cancelled);
    assert!(
        after.attempts.is_empty(),
        "a cancelled run ran steps: {:?}",
        after.attempts
    );
    // And it let go of the node.
    assert_eq!(
        engine
            .store()
            .try_lock("holder", &node, engine::now_millis(), lease_ms)
            .await
            .unwrap(),
        None
    );
}
