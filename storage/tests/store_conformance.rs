//! One conformance suite for every `engine::Store`: SQLite, Postgres and the in-memory store.

use testkit::stores as common;

use engine::{
    AttemptEnd, AttemptStart, AttemptStatus, CancelOutcome, CatchUp, Created, LogLine, NewRun,
    Plan, RunFilter, RunStatus, Schedule, StepSpec, Store, StoreError, Transition,
};
use serde_json::json;
use std::sync::Arc;

fn new_run(id: &str, now: i64) -> NewRun {
    NewRun {
        id: id.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({"n": 1}),
        plan: Plan::new(vec![
            StepSpec::new("a", "k"),
            StepSpec::new("b", "k").after("a"),
        ]),
        forked_from: None,
        copied: Vec::new(),
        resources: vec!["node/a".into()],
        now,
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn memory() {
                    let store = engine::testing::MemoryStore::default();
                    super::$name(std::sync::Arc::new(store)).await;
                }
                #[tokio::test]
                async fn sqlite() {
                    let (store, _guard) = crate::common::sqlite().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
                #[tokio::test]
                async fn postgres() {
                    let (store, _guard) = crate::common::postgres().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
            }
        )+
    };
}

conformance!(
    create_is_idempotent_by_id,
    leases_fence_stale_writers,
    transitions_persist_attempts_logs_and_status,
    cancel_depends_on_the_lease,
    list_filters_and_orders,
    fork_copies_are_recorded,
    locks_are_exclusive_until_the_holder_ends_or_dies,
    schedules_persist_and_only_move_forward,
);

async fn create_is_idempotent_by_id(store: Arc<dyn Store>) {
    let first = store.create_run(&new_run("r1", 1_000)).await.unwrap();
    assert!(matches!(first, Created::New(_)));
    let again = store.create_run(&new_run("r1", 2_000)).await.unwrap();
    let Created::Existing(existing) = again else {
        panic!("second create must return the existing run")
    };
    assert_eq!(existing.created_at, 1_000);
    assert_eq!(existing.status, RunStatus::Pending);
    assert_eq!(existing.plan, new_run("r1", 0).plan);
    assert_eq!(existing.input, json!({"n": 1}));
    assert!(matches!(
        store.load_run("missing").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn leases_fence_stale_writers(store: Arc<dyn Store>) {
    store.create_run(&new_run("r1", 0)).await.unwrap();
    let a = store.acquire_lease("r1", "A", 100, 1_100).await.unwrap();
    // A live lease cannot be taken.
    match store.acquire_lease("r1", "B", 500, 1_500).await {
        Err(StoreError::LeaseHeld {
            owner, expires_at, ..
        }) => {
            assert_eq!(owner, "A");
            assert_eq!(expires_at, 1_100);
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    // A's write renews the lease.
    let t = Transition {
        now: 600,
        lease_expires_at: 1_600,
        status: Some(RunStatus::Running),
        ..Transition::default()
    };
    store.commit(&a, &t).await.unwrap();
    assert!(store.acquire_lease("r1", "B", 1_200, 2_200).await.is_err());
    // Once expired, B takes over with a higher epoch.
    let b = store.acquire_lease("r1", "B", 1_700, 2_700).await.unwrap();
    assert!(b.epoch > a.epoch);
    // A's writes are now rejected, and change nothing.
    let stale = Transition {
        now: 1_800,
        lease_expires_at: 2_800,
        started: vec![AttemptStart {
            step: "a".into(),
            number: 1,
        }],
        status: Some(RunStatus::Failed),
        ..Transition::default()
    };
    assert!(matches!(
        store.commit(&a, &stale).await,
        Err(StoreError::StaleLease { .. })
    ));
    let state = store.load_run("r1").await.unwrap();
    assert!(state.attempts.is_empty());
    assert_eq!(state.run.status, RunStatus::Running);
    assert_eq!(state.run.lease_owner.as_deref(), Some("B"));
    // B's writes go through.
    store
        .commit(
            &b,
            &Transition {
                now: 1_900,
                lease_expires_at: 2_900,
                ..Transition::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        store.acquire_lease("nope", "C", 0, 1).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn transitions_persist_attempts_logs_and_status(store: Arc<dyn Store>) {
    store.create_run(&new_run("r1", 0)).await.unwrap();
    let lease = store.acquire_lease("r1", "A", 10, 10_000).await.unwrap();
    let start_a = Transition {
        now: 20,
        lease_expires_at: 10_000,
        started: vec![AttemptStart {
            step: "a".into(),
            number: 1,
        }],
        status: Some(RunStatus::Running),
        abandon_running: true,
        ..Transition::default()
    };
    store.commit(&lease, &start_a).await.unwrap();
    // The same transition again (a retried commit) is harmless.
    store.commit(&lease, &start_a).await.unwrap();
    let line = |seq| LogLine {
        step: "a".into(),
        attempt: 1,
        seq,
        at: 25 + seq,
        level: "info".into(),
        line: format!("line {seq}"),
    };
    store
        .commit(
            &lease,
            &Transition {
                now: 30,
                lease_expires_at: 10_000,
                ended: vec![AttemptEnd {
                    step: "a".into(),
                    number: 1,
                    status: AttemptStatus::Succeeded,
                    output: Some(json!({"x": 1})),
                    error: None,
                    retry_at: None,
                }],
                started: vec![AttemptStart {
                    step: "b".into(),
                    number: 1,
                }],
                logs: vec![line(0), line(1)],
                ..Transition::default()
            },
        )
        .await
        .unwrap();
    let state = store.load_run("r1").await.unwrap();
    assert_eq!(state.attempts.len(), 2);
    let a = &state.attempts[0];
    assert_eq!((a.step.as_str(), a.status), ("a", AttemptStatus::Succeeded));
    assert_eq!((a.started_at, a.finished_at), (20, Some(30)));
    assert_eq!(a.output, Some(json!({"x": 1})));
    let b = &state.attempts[1];
    assert_eq!((b.step.as_str(), b.status), ("b", AttemptStatus::Running));
    assert_eq!(
        store.logs("r1", Some("a")).await.unwrap(),
        vec![line(0), line(1)]
    );
    assert!(store.logs("r1", Some("b")).await.unwrap().is_empty());

    // A new owner marks the dead owner's running attempt abandoned.
    let lease2 = store
        .acquire_lease("r1", "B", 20_000, 30_000)
        .await
        .unwrap();
    store
        .commit(
            &lease2,
            &Transition {
                now: 20_001,
                lease_expires_at: 30_000,
                abandon_running: true,
                status: Some(RunStatus::Failed),
                error: Some("step `b` failed".into()),
                release: true,
                ..Transition::default()
            },
        )
        .await
        .unwrap();
    let state = store.load_run("r1").await.unwrap();
    assert_eq!(state.attempts[1].status, AttemptStatus::Abandoned);
    assert_eq!(state.run.status, RunStatus::Failed);
    assert_eq!(state.run.error.as_deref(), Some("step `b` failed"));
    assert_eq!(state.run.finished_at, Some(20_001));
    assert_eq!(state.run.lease_owner, None);
    // Released: anyone may take it at once.
    store
        .acquire_lease("r1", "C", 20_002, 30_000)
        .await
        .unwrap();
}

async fn cancel_depends_on_the_lease(store: Arc<dyn Store>) {
    store.create_run(&new_run("idle", 0)).await.unwrap();
    assert_eq!(
        store.request_cancel("idle", 10).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        store.load_run("idle").await.unwrap().run.status,
        RunStatus::Cancelled
    );
    assert_eq!(
        store.request_cancel("idle", 11).await.unwrap(),
        CancelOutcome::AlreadyFinal(RunStatus::Cancelled)
    );

    store.create_run(&new_run("live", 0)).await.unwrap();
    let lease = store.acquire_lease("live", "A", 10, 1_000).await.unwrap();
    assert_eq!(
        store.request_cancel("live", 20).await.unwrap(),
        CancelOutcome::Requested
    );
    let ack = store
        .commit(
            &lease,
            &Transition {
                now: 30,
                lease_expires_at: 1_000,
                ..Transition::default()
            },
        )
        .await
        .unwrap();
    assert!(
        ack.cancel_requested,
        "the executor learns of the cancel on its next write"
    );
    // An abandoned run (lease lapsed) is cancelled directly.
    assert_eq!(
        store.request_cancel("live", 5_000).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert!(matches!(
        store.request_cancel("ghost", 0).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn list_filters_and_orders(store: Arc<dyn Store>) {
    for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
        let mut run = new_run(id, 100 * i as i64);
        if *id == "r2" {
            run.workflow = "other".into();
        }
        store.create_run(&run).await.unwrap();
    }
    store.request_cancel("r3", 1_000).await.unwrap();
    let ids = |runs: Vec<engine::RunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(ids(all), vec!["r3", "r2", "r1"]);
    let wf = RunFilter {
        workflow: Some("wf".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.list_runs(&wf).await.unwrap()), vec!["r3", "r1"]);
    let pending = RunFilter {
        statuses: vec![RunStatus::Pending],
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.list_runs(&pending).await.unwrap()),
        vec!["r2", "r1"]
    );
    let one = RunFilter {
        limit: Some(1),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.list_runs(&one).await.unwrap()), vec!["r3"]);
}

async fn fork_copies_are_recorded(store: Arc<dyn Store>) {
    let mut run = new_run("child", 50);
    run.forked_from = Some(("parent".into(), "b".into()));
    run.copied = vec![("a".into(), json!({"kept": true}))];
    store.create_run(&run).await.unwrap();
    let state = store.load_run("child").await.unwrap();
    assert_eq!(
        state.run.forked_from,
        Some(("parent".to_string(), "b".to_string()))
    );
    assert_eq!(state.attempts.len(), 1);
    let a = &state.attempts[0];
    assert_eq!(a.status, AttemptStatus::Copied);
    assert_eq!(a.output, Some(json!({"kept": true})));
    assert_eq!(a.copied_from.as_deref(), Some("parent"));
}

async fn locks_are_exclusive_until_the_holder_ends_or_dies(store: Arc<dyn Store>) {
    for id in ["r1", "r2", "r3"] {
        store.create_run(&new_run(id, 0)).await.unwrap();
    }
    let res = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store.load_run("r1").await.unwrap().run.resources,
        vec!["node/a"]
    );
    assert_eq!(
        store
            .try_lock("r1", &res(&["node/a", "node/b"]), 1_000, 500)
            .await
            .unwrap(),
        None
    );
    // Taking again is harmless; another run waits, for any of the resources.
    assert_eq!(
        store
            .try_lock("r1", &res(&["node/a"]), 1_001, 500)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .try_lock("r2", &res(&["node/c", "node/b"]), 1_002, 500)
            .await
            .unwrap(),
        Some("r1".into())
    );
    // All or none: r2 did not keep node/c.
    assert_eq!(
        store
            .try_lock("r3", &res(&["node/c"]), 1_003, 500)
            .await
            .unwrap(),
        None
    );
    store.unlock("r3").await.unwrap();
    // While r1 runs under a live lease, the lock holds past the grace period.
    store.acquire_lease("r1", "A", 1_100, 10_000).await.unwrap();
    assert_eq!(
        store
            .try_lock("r2", &res(&["node/a"]), 5_000, 500)
            .await
            .unwrap(),
        Some("r1".into())
    );
    // Its worker died: once the lease lapsed, the lock is free.
    assert_eq!(
        store
            .try_lock("r2", &res(&["node/a"]), 20_000, 500)
            .await
            .unwrap(),
        None
    );
    store.unlock("r2").await.unwrap();
    assert_eq!(
        store
            .try_lock("r3", &res(&["node/a", "node/b"]), 20_001, 500)
            .await
            .unwrap(),
        None
    );
}

async fn schedules_persist_and_only_move_forward(store: Arc<dyn Store>) {
    let s = Schedule {
        name: "rotate".into(),
        cron: "0 3 * * *".into(),
        tz: "Europe/Berlin".into(),
        workflow: "wf".into(),
        input: json!({"secret": "db"}),
        catch_up: CatchUp::Once,
        resources: vec!["node/a".into()],
        paused: false,
        last_fire: 100,
        created_at: 100,
    };
    assert!(store.add_schedule(&s).await.unwrap());
    assert!(!store.add_schedule(&s).await.unwrap(), "names are unique");
    assert_eq!(store.schedules().await.unwrap(), vec![s.clone()]);
    assert!(store.advance_schedule("rotate", 200).await.unwrap());
    assert!(
        !store.advance_schedule("rotate", 150).await.unwrap(),
        "never backwards"
    );
    assert!(store.set_schedule_paused("rotate", true).await.unwrap());
    let got = store.schedules().await.unwrap().remove(0);
    assert_eq!((got.last_fire, got.paused), (200, true));
    assert!(!store.set_schedule_paused("ghost", true).await.unwrap());
    assert!(store.remove_schedule("rotate").await.unwrap());
    assert!(store.schedules().await.unwrap().is_empty());

    // Runs of a schedule are found by their id prefix.
    store
        .create_run(&new_run("schedule:rotate:1", 0))
        .await
        .unwrap();
    store
        .create_run(&new_run("schedule:rotate2:1", 0))
        .await
        .unwrap();
    let found = store
        .list_runs(&RunFilter {
            id_prefix: Some("schedule:rotate:".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, "schedule:rotate:1");
}
