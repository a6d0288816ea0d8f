//! Schedules with an injected clock: catch-up policies, pauses, and concurrent schedulers.

use engine::{CatchUp, Engine, RunFilter, Schedule};
use std::sync::Arc;
use std::time::Duration;
use worker::fire_due;
use worker::queue::Queue;

const HOUR: i64 = 3_600_000;
/// A whole hour, so hourly fire times are round.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;

async fn setup(url: &str) -> (Engine, Queue) {
    let store = storage::connect(url).await.unwrap();
    let engine = Engine::new(Arc::new(store), workflows::registry());
    let queue = Queue::open(url, "test", Duration::from_secs(1))
        .await
        .unwrap();
    (engine, queue)
}

fn hourly(name: &str, catch_up: CatchUp) -> Schedule {
    Schedule {
        name: name.into(),
        cron: "0 * * * *".into(),
        tz: "UTC".into(),
        workflow: "diag.chain".into(),
        input: serde_json::json!({"steps": 1}),
        catch_up,
        resources: vec![],
        paused: false,
        last_fire: T0,
        created_at: T0,
    }
}

async fn fire_times(engine: &Engine, name: &str) -> Vec<i64> {
    let mut t: Vec<i64> = engine
        .list(&RunFilter {
            id_prefix: Some(engine::schedule::run_id_prefix(name)),
            ..RunFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .filter_map(|r| engine::schedule::fire_time_of(&r.id))
        .collect();
    t.sort();
    t
}

async fn catch_up_policies(url: &str) {
    let (engine, queue) = setup(url).await;
    let store = engine.store().clone();
    store
        .add_schedule(&hourly("once", CatchUp::Once))
        .await
        .unwrap();
    store
        .add_schedule(&hourly("skip", CatchUp::Skip))
        .await
        .unwrap();

    // Nothing ran for three hours and ten minutes.
    let late = T0 + 3 * HOUR + 600_000;
    assert_eq!(fire_due(&engine, &queue, late).await.unwrap(), 1);
    assert_eq!(
        fire_times(&engine, "once").await,
        vec![T0 + 3 * HOUR],
        "once: the latest missed"
    );
    assert!(
        fire_times(&engine, "skip").await.is_empty(),
        "skip: none of the missed"
    );
    // Asking again at the same time fires nothing more.
    assert_eq!(fire_due(&engine, &queue, late).await.unwrap(), 0);

    // The next fire time, noticed on time, fires for both.
    let on_time = T0 + 4 * HOUR + 1_000;
    assert_eq!(fire_due(&engine, &queue, on_time).await.unwrap(), 2);
    assert_eq!(fire_times(&engine, "skip").await, vec![T0 + 4 * HOUR]);

    // Two schedulers at the same fire time still make one run.
    let next = T0 + 5 * HOUR + 500;
    let (a, b) = tokio::join!(
        fire_due(&engine, &queue, next),
        fire_due(&engine, &queue, next)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        fire_times(&engine, "once").await,
        vec![T0 + 3 * HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR]
    );

    // Paused: no fire; resumed later, `once` catches up with one run.
    store.set_schedule_paused("once", true).await.unwrap();
    assert_eq!(
        fire_due(&engine, &queue, T0 + 6 * HOUR + 100)
            .await
            .unwrap(),
        1,
        "only skip"
    );
    store.set_schedule_paused("once", false).await.unwrap();
    fire_due(&engine, &queue, T0 + 8 * HOUR + 600_000)
        .await
        .unwrap();
    assert_eq!(
        fire_times(&engine, "once").await.last(),
        Some(&(T0 + 8 * HOUR))
    );
    assert_eq!(fire_times(&engine, "once").await.len(), 4);
}

#[tokio::test]
async fn catch_up_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    catch_up_policies(&testkit::sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn catch_up_on_postgres() {
    let pg = testkit::Postgres::start().unwrap();
    catch_up_policies(&pg.fresh_database().unwrap()).await;
}

#[tokio::test]
async fn a_worker_requeues_pending_runs_that_never_reached_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, queue) = setup(&testkit::sqlite_url(dir.path())).await;
    // As after a crash between writing the run and enqueueing it.
    let id = engine
        .create("diag.chain", serde_json::json!({"steps": 2}), None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    assert_eq!(worker::requeue_pending(&engine, &queue).await.unwrap(), 1);
    assert_eq!(
        worker::requeue_pending(&engine, &queue).await.unwrap(),
        0,
        "idempotent"
    );
    assert!(!queue.enqueue(&id).await.unwrap(), "already queued");
    let stop = tokio_util::sync::CancellationToken::new();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let worker = {
                let (engine, queue, stop) = (engine.clone(), queue.clone(), stop.clone());
                tokio::task::spawn_local(async move {
                    worker::work(engine, queue, "w1", 2, stop).await.unwrap();
                })
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while engine.load(&id).await.unwrap().run.status != engine::RunStatus::Succeeded {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the worker never ran it"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.cancel();
            worker.await.unwrap();
        })
        .await;
}
