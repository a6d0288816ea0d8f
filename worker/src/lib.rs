//! # worker: executes queued runs and fires due schedules, above the engine
//!
//! ```text
//!   Queue (apalis) ──RunJob──► Runner ──► try_lock ─► Engine::execute_with ─► unlock
//!   scheduler tick ──► fire_due ──► Engine::create_with (id from the fire time) ──► Queue
//! ```
//!
//! [`queue::Queue`] carries run ids (apalis on Postgres or SQLite, beside the
//! state database that [`storage`] opens); [`Runner`] takes a job's resource
//! locks, executes the run with the [`engine::Engine`] and unlocks;
//! [`fire_due`] turns due schedules into runs; [`work`] runs both until
//! shutdown. The engine's tables stay the truth: a job holds only a run id,
//! and the run's lease decides who executes it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod queue;

use crate::queue::{JobHandler, Queue};
use async_trait::async_trait;
use engine::schedule::{self, Cron};
use engine::{
    Engine, EngineError, Observer, RunFilter, RunOutcome, RunState, RunStatus, now_millis,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How late a fire time may be noticed and still count as on time.
pub const ON_TIME: i64 = 5_000;
/// How often the scheduler looks at the schedules.
pub const TICK: Duration = Duration::from_millis(200);

/// Executes one job: lock the run's resources (waiting for them), run it, unlock.
pub struct Runner {
    /// The engine that executes runs.
    pub engine: Engine,
    /// Fires at shutdown: runs in flight are handed back.
    pub shutdown: CancellationToken,
}

#[async_trait]
impl JobHandler for Runner {
    async fn handle(&self, run_id: String) -> Result<(), String> {
        let state = match self.engine.load(&run_id).await {
            Ok(s) => s,
            Err(EngineError::Store(engine::StoreError::NotFound(_))) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if state.run.status.is_final() {
            return Ok(());
        }
        let result = execute_locked(
            &self.engine,
            state,
            CancellationToken::new(),
            self.shutdown.clone(),
            Observer::none(),
        )
        .await;
        let result = match result {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => return Err("worker shutting down".into()),
            Err(e) => Err(e),
        };
        match result {
            // Handed back at shutdown: fail the job so another worker takes it.
            Ok(o) if o.status == RunStatus::Pending => Err("handed back at shutdown".into()),
            Ok(_) => Ok(()),
            // Another process executes it (a CLI resume, say): nothing to do here.
            Err(EngineError::Busy { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Executes a run the caller has just read once it holds every lock in its
/// `resources`: waits for them (backing off to 500 ms between tries; a run
/// never fails for a lock), executes, unlocks. The run is read again only
/// if it had to wait (a run cancelled or finished meanwhile ends as it is,
/// unexecuted) or someone held it meanwhile ([`Engine::execute_loaded`]). `None`:
/// `stop` fired while it waited, and the run was not touched. `stop` also
/// hands an executing run back (as [`Engine::execute_with`]'s suspend);
/// `cancel` cancels it, waiting or executing.
pub async fn execute_locked(
    engine: &Engine,
    state: RunState,
    cancel: CancellationToken,
    stop: CancellationToken,
    observer: Observer,
) -> Result<Option<RunOutcome>, EngineError> {
    let run_id = state.run.id.clone();
    let run_id = run_id.as_str();
    let resources = state.run.resources.clone();
    let grace = engine.config().lease_ttl.as_millis() as i64;
    let store = engine.store();
    let mut wait = Duration::from_millis(20);
    let mut said = false;
    while let Some(holder) = store
        .try_lock(run_id, &resources, now_millis(), grace)
        .await
        .map_err(EngineError::Store)?
    {
        if !std::mem::replace(&mut said, true) {
            tracing::warn!(
                "run {run_id} is waiting for a resource lock: {} (held by run {holder})",
                resources.join(", ")
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return Ok(None),
            // Cancelled while it waited: it never started, so it ends cancelled.
            _ = cancel.cancelled() => {
                engine.cancel(run_id).await?;
                let run = engine.load(run_id).await?.run;
                return Ok(Some(RunOutcome::from_record(&run)));
            }
        }
        wait = (wait * 2).min(Duration::from_millis(500));
    }
    // While it waited, another process may have cancelled the run, or
    // finished it: what it read before the wait is not what to execute.
    let state = if said {
        let fresh = engine.load(run_id).await?;
        if fresh.run.status.is_final() && !state.run.status.is_final() {
            let _ = store.unlock(run_id).await;
            return Ok(Some(RunOutcome::from_record(&fresh.run)));
        }
        fresh
    } else {
        state
    };
    let result = engine.execute_loaded(state, cancel, stop, observer).await;
    let _ = store.unlock(run_id).await;
    result.map(Some)
}

/// Fires every schedule due at `now` once: creates the fire time's run and enqueues it.
pub async fn fire_due(engine: &Engine, queue: &Queue, now: i64) -> Result<usize, String> {
    let mut fired = 0;
    for s in engine
        .store()
        .schedules()
        .await
        .map_err(|e| e.to_string())?
    {
        let cron = match Cron::parse(&s.cron, &s.tz) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(schedule = %s.name, "skipping: {e}");
                continue;
            }
        };
        let Some(due) = schedule::due(&s, &cron, now, ON_TIME) else {
            continue;
        };
        if let Some(fire) = due.fire {
            // The run id comes from the fire time: every scheduler makes the same one.
            let id = schedule::run_id(&s.name, fire);
            engine
                .create_with(
                    &s.workflow,
                    s.input.clone(),
                    Some(id.clone()),
                    s.resources.clone(),
                )
                .await
                .map_err(|e| format!("schedule {}: {e}", s.name))?;
            queue.enqueue(&id).await.map_err(|e| e.to_string())?;
            fired += 1;
        }
        engine
            .store()
            .advance_schedule(&s.name, due.advance_to)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(fired)
}

/// Enqueues runs recorded as pending but never queued (a crash between the two writes).
pub async fn requeue_pending(engine: &Engine, queue: &Queue) -> Result<usize, String> {
    let pending = engine
        .list(&RunFilter {
            statuses: vec![RunStatus::Pending],
            ..RunFilter::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut added = 0;
    let ids: Vec<String> = pending.into_iter().map(|r| r.id).collect();
    for id in ids {
        if queue.enqueue(&id).await.map_err(|e| e.to_string())? {
            added += 1;
        }
    }
    Ok(added)
}

/// Runs a worker named `name` until `shutdown` fires: the scheduler and up to
/// `concurrency` runs at once. Returns once the runs in flight are handed back or done.
pub async fn work(
    engine: Engine,
    queue: Queue,
    name: &str,
    concurrency: usize,
    shutdown: CancellationToken,
) -> Result<(), String> {
    requeue_pending(&engine, &queue).await?;
    let scheduler = {
        let (engine, queue, shutdown) = (engine.clone(), queue.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = fire_due(&engine, &queue, now_millis()).await {
                    tracing::warn!("scheduler: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    };
    let runner = Arc::new(Runner {
        engine,
        shutdown: shutdown.clone(),
    });
    let stop = shutdown.clone();
    let result = queue
        .work(
            name,
            concurrency,
            runner,
            async move { stop.cancelled().await },
        )
        .await;
    shutdown.cancel();
    let _ = scheduler.await;
    result
}
