//! What Postgres is asked to wait for: an unlock is committed without waiting
//! for the WAL flush, and that setting ends with the unlock's own statement,
//! so every lease, lock and step commit after it on the same connections
//! still waits (ARCHITECTURE.md, storage: which commits wait).

use engine::{Plan, StepSpec, Store};
use serde_json::json;

fn new_run(id: &str) -> engine::NewRun {
    engine::NewRun {
        id: id.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({}),
        plan: Plan::new(vec![StepSpec::new("a", "k")]),
        forked_from: None,
        copied: Vec::new(),
        resources: Vec::new(),
        now: 0,
    }
}

#[tokio::test]
async fn an_unlock_does_not_leave_its_connections_committing_unawaited() {
    // Default durability: the test servers commit unawaited throughout.
    let pg = testkit::Postgres::start_durable().expect("start postgres (run scripts/setup.sh)");
    let store = storage::connect(&pg.fresh_database().unwrap())
        .await
        .unwrap();
    let pool = store.pg_pool().expect("a Postgres store").clone();
    for i in 0..20 {
        let id = format!("r{i}");
        store.create_run(&new_run(&id)).await.unwrap();
        let lease = store.acquire_lease(&id, "A", 100, 1_100).await.unwrap();
        assert_eq!(lease.epoch, 1);
        // The fence still sees it: the lease is there for every reader at once.
        assert!(matches!(
            store.acquire_lease(&id, "B", 200, 1_200).await,
            Err(engine::StoreError::LeaseHeld { .. })
        ));
        // Locks are there for every reader at once.
        let node = vec![format!("node/n{}", i % 2)];
        assert_eq!(store.try_lock(&id, &node, 100, 1_000).await.unwrap(), None);
        store
            .create_run(&new_run(&format!("{id}-other")))
            .await
            .unwrap();
        let other = store
            .try_lock(&format!("{id}-other"), &node, 100, 1_000)
            .await;
        assert_eq!(other.unwrap().as_deref(), Some(id.as_str()));
        store.unlock(&id).await.unwrap();
    }
    // Every connection the pool opened, held at once so none is counted twice.
    let mut held = Vec::new();
    for _ in 0..pool.size() {
        held.push(pool.acquire().await.unwrap());
    }
    assert!(!held.is_empty());
    for conn in &mut held {
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(setting, "on", "the unlock's setting outlived its statement");
    }
}
