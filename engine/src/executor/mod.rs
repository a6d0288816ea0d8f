//! The executor: runs a leased run's ready steps concurrently and persists every transition.
//!
//! One task owns the run's state and is the only writer of step transitions;
//! step attempts run as child tasks and report back over a channel. A step's
//! end and the starts it unblocks go to the store in one commit. A heartbeat
//! task renews the lease, flushes log lines and picks up remote cancels.

mod outcome;

use crate::attempt::{self, Outcome};
use crate::events::{Observer, RunEvent};
use crate::model::{AttemptStatus, LogLine, RunState, RunStatus, now_millis};
use crate::plan::{Plan, StepSpec};
use crate::step::{StepContext, StepLogger};
use crate::store::{AttemptEnd, AttemptStart, Lease, Store, StoreError, Transition};
use crate::workflow::Workflow;
use crate::{EngineConfig, EngineError, RunOutcome};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Where a step is within this execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Running,
    WaitingRetry,
    Done,
    Failed,
    Cancelled,
}

enum Msg {
    Ended {
        step: String,
        attempt: i64,
        outcome: Outcome,
        elapsed: Duration,
    },
    RetryDue(String),
}

type LogBuffer = Arc<Mutex<Vec<LogLine>>>;

fn drain(logs: &LogBuffer) -> Vec<LogLine> {
    std::mem::take(&mut *logs.lock().unwrap_or_else(|p| p.into_inner()))
}

/// How the caller steers an execution.
pub(crate) struct Controls {
    /// Cancels the run.
    pub cancel: CancellationToken,
    /// Hands the run back at shutdown.
    pub suspend: CancellationToken,
    /// Receives progress events.
    pub observer: Observer,
}

pub(crate) struct Execution {
    store: Arc<dyn Store>,
    config: EngineConfig,
    lease: Lease,
    workflow: Arc<Workflow>,
    plan: Arc<Plan>,
    input: Arc<serde_json::Value>,
    phase: HashMap<String, Phase>,
    outputs: HashMap<String, serde_json::Value>,
    next_attempt: HashMap<String, i64>,
    used: HashMap<String, u32>,
    errors: BTreeMap<String, String>,
    running: usize,
    waiting: usize,
    cancelling: bool,
    /// Stop starting steps, let the running ones finish, release the run for another executor.
    suspending: bool,
    suspend: CancellationToken,
    token: CancellationToken,
    /// Drops the steps still running when a hand-back's grace is over.
    abort: CancellationToken,
    lost: Arc<AtomicBool>,
    logs: LogBuffer,
    observer: Observer,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Execution {
    /// Runs `state` to a final status under `lease`.
    pub(crate) async fn run(
        store: Arc<dyn Store>,
        config: EngineConfig,
        lease: Lease,
        workflow: Arc<Workflow>,
        state: RunState,
        controls: Controls,
    ) -> Result<RunOutcome, EngineError> {
        let Controls {
            cancel,
            suspend,
            observer,
        } = controls;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let plan = Arc::new(state.run.plan.clone());
        let mut exec = Execution {
            store,
            config,
            lease,
            workflow,
            plan: plan.clone(),
            input: Arc::new(state.run.input.clone()),
            phase: HashMap::new(),
            outputs: HashMap::new(),
            next_attempt: HashMap::new(),
            used: HashMap::new(),
            errors: BTreeMap::new(),
            running: 0,
            waiting: 0,
            cancelling: false,
            suspending: false,
            suspend,
            token: cancel.child_token(),
            abort: CancellationToken::new(),
            lost: Arc::new(AtomicBool::new(false)),
            logs: Arc::default(),
            observer,
            tx,
        };
        exec.load(&state);
        let done = exec.count(Phase::Done);
        exec.observer.emit(RunEvent::Started {
            run_id: exec.lease.run_id.clone(),
            total: plan.steps.len(),
            done,
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        let heartbeat = tokio::spawn(exec.heartbeat(stop_rx));
        let mut tasks = JoinSet::new();
        let result = exec.drive(&mut rx, &mut tasks, stop_tx, heartbeat).await;
        if result.is_err() {
            exec.token.cancel();
            tasks.abort_all();
        }
        result
    }

    fn load(&mut self, state: &RunState) {
        for s in &self.plan.steps {
            self.phase.insert(s.name.clone(), Phase::Pending);
            self.next_attempt.insert(s.name.clone(), 1);
        }
        for a in &state.attempts {
            if let Some(n) = self.next_attempt.get_mut(&a.step) {
                *n = (*n).max(a.number + 1);
            }
            if matches!(a.status, AttemptStatus::Succeeded | AttemptStatus::Copied) {
                self.phase.insert(a.step.clone(), Phase::Done);
                let output = a.output.clone().unwrap_or(serde_json::Value::Null);
                self.outputs.insert(a.step.clone(), output);
            }
        }
    }

    fn count(&self, phase: Phase) -> usize {
        self.phase.values().filter(|p| **p == phase).count()
    }

    async fn drive(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Msg>,
        tasks: &mut JoinSet<()>,
        stop_heartbeat: watch::Sender<bool>,
        heartbeat: tokio::task::JoinHandle<()>,
    ) -> Result<RunOutcome, EngineError> {
        let mut stop_heartbeat = Some((stop_heartbeat, heartbeat));
        let mut ended: Vec<AttemptEnd> = Vec::new();
        // Step results are announced only once they are durable.
        let mut announce: Vec<RunEvent> = Vec::new();
        let mut first = true;
        // A step that runs alone runs on this task, not a task of its own: in
        // a chain, a spawned step hands the run to another worker thread and
        // back for every step, and on two cores shared with the database that
        // costs more than the step's commit (`engine_overhead`'s chain, 2.2x
        // the adjacent commit with spawns against 1.8x on one worker thread).
        let mut inline: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        loop {
            // A step may report its cancelled attempt before the loop sees the
            // token fire; decide on the cancel before deciding what comes next.
            if self.token.is_cancelled() && !self.cancelling {
                if self.lost.load(Ordering::SeqCst) {
                    return Err(EngineError::LeaseLost(self.lease.run_id.clone()));
                }
                self.cancelling = true;
                for phase in self.phase.values_mut() {
                    if *phase == Phase::WaitingRetry {
                        *phase = Phase::Cancelled;
                        self.waiting -= 1;
                    }
                }
            }
            if self.suspend.is_cancelled() && !self.suspending && !self.cancelling {
                self.suspending = true;
                for phase in self.phase.values_mut() {
                    if *phase == Phase::WaitingRetry {
                        *phase = Phase::Pending;
                        self.waiting -= 1;
                    }
                }
                // Steps still running after the grace period are told to
                // stop, and dropped a second later if they do not (not a
                // whole second grace after the cancel).
                let (token, abort) = (self.token.clone(), self.abort.clone());
                let grace = self.config.cancel_grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    token.cancel();
                    tokio::time::sleep(Duration::from_secs(1).min(grace)).await;
                    abort.cancel();
                });
            }
            let started = if self.cancelling || self.suspending {
                Vec::new()
            } else {
                self.pick_ready()
            };
            let last = self.running == 0 && self.waiting == 0 && started.is_empty();
            if last && let Some((tx, handle)) = stop_heartbeat.take() {
                let _ = tx.send(true);
                let _ = handle.await;
            }
            if first || last || !ended.is_empty() || !started.is_empty() {
                let (status, error) = if last {
                    let (s, e) = self.final_status();
                    (Some(s), e)
                } else if first {
                    (Some(RunStatus::Running), None)
                } else {
                    (None, None)
                };
                let transition = Transition {
                    now: now_millis(),
                    lease_expires_at: now_millis() + self.config.lease_ttl.as_millis() as i64,
                    ended: std::mem::take(&mut ended),
                    started: started
                        .iter()
                        .map(|(step, number)| AttemptStart {
                            step: step.clone(),
                            number: *number,
                        })
                        .collect(),
                    logs: drain(&self.logs),
                    status,
                    error: error.clone(),
                    abandon_running: first,
                    release: last,
                };
                self.commit(&transition).await?;
                first = false;
                for event in announce.drain(..) {
                    self.observer.emit(event);
                }
                let alone = started.len() == 1 && self.running == 1;
                for (step, number) in started {
                    let attempt = self.attempt(step, number);
                    if alone {
                        inline.push(Box::pin(attempt));
                    } else {
                        tasks.spawn(attempt);
                    }
                }
                if last {
                    let status = status.unwrap_or(RunStatus::Failed);
                    self.observer.emit(RunEvent::Finished {
                        status,
                        error: error.clone(),
                    });
                    return Ok(RunOutcome {
                        run_id: self.lease.run_id.clone(),
                        status,
                        error,
                        failed_steps: self.errors.clone(),
                    });
                }
            }

            tokio::select! {
                msg = rx.recv() => {
                    let mut next = msg;
                    // Group commit: fold in every result already waiting, so
                    // steps that finish together share one write.
                    while let Some(msg) = next {
                        self.on_message(msg, &mut ended, &mut announce);
                        next = rx.try_recv().ok();
                    }
                    // Reap finished tasks so the set does not grow.
                    while tasks.try_join_next().is_some() {}
                }
                // The inline step ended: its result is in the channel.
                Some(()) = inline.next(), if !inline.is_empty() => {
                    while let Ok(msg) = rx.try_recv() {
                        self.on_message(msg, &mut ended, &mut announce);
                    }
                }
                _ = self.token.cancelled(), if !self.cancelling && !self.suspending => {}
                _ = self.suspend.cancelled(), if !self.suspending && !self.cancelling => {}
            }
        }
    }

    fn on_message(&mut self, msg: Msg, ended: &mut Vec<AttemptEnd>, announce: &mut Vec<RunEvent>) {
        match msg {
            Msg::Ended {
                step,
                attempt,
                outcome,
                elapsed,
            } => {
                let (end, event) = self.on_ended(step, attempt, outcome, elapsed);
                ended.push(end);
                announce.extend(event);
            }
            Msg::RetryDue(step) => {
                if self.phase.get(&step) == Some(&Phase::WaitingRetry) {
                    self.waiting -= 1;
                    self.phase.insert(step, Phase::Pending);
                }
            }
        }
    }

    /// Commits a transition, retrying transient database errors; a stale lease is fatal.
    async fn commit(&self, transition: &Transition) -> Result<(), EngineError> {
        let mut delay = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            match self.store.commit(&self.lease, transition).await {
                Ok(ack) => {
                    if ack.cancel_requested {
                        self.token.cancel();
                    }
                    return Ok(());
                }
                Err(StoreError::StaleLease { .. }) => {
                    self.lost.store(true, Ordering::SeqCst);
                    return Err(EngineError::LeaseLost(self.lease.run_id.clone()));
                }
                Err(StoreError::Database(e)) if tries < 6 => {
                    tracing::warn!(
                        run = %self.lease.run_id,
                        "write failed, retrying in {delay:?}: {e}"
                    );
                    tries += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Marks ready steps running, up to the concurrency bound; returns `(step, attempt)`.
    fn pick_ready(&mut self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let plan = self.plan.clone();
        for s in &plan.steps {
            if self.running >= self.config.concurrency {
                break;
            }
            if self.phase[&s.name] != Phase::Pending
                || !s.deps.iter().all(|d| self.phase[d] == Phase::Done)
            {
                continue;
            }
            let n = self.next_attempt.get_mut(&s.name).expect("planned step");
            let number = *n;
            *n += 1;
            *self.used.entry(s.name.clone()).or_default() += 1;
            self.phase.insert(s.name.clone(), Phase::Running);
            self.running += 1;
            out.push((s.name.clone(), number));
        }
        out
    }

    /// The attempt `attempt` of `step`, reporting its end on the channel: spawned
    /// as a task of its own, or polled by the executor when it runs alone.
    fn attempt(
        &self,
        step: String,
        attempt: i64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let spec: StepSpec = self.plan.step(&step).expect("planned step").clone();
        let handler = self
            .workflow
            .handler(&spec.kind)
            .expect("kinds checked before execution")
            .clone();
        let deps = spec
            .deps
            .iter()
            .map(|d| (d.clone(), self.outputs[d].clone()))
            .collect();
        let dep_kinds = spec
            .deps
            .iter()
            .filter_map(|d| Some((d.clone(), self.plan.step(d)?.kind.clone())))
            .collect();
        let subject = spec.subject().map(str::to_string);
        let ctx = StepContext {
            run_id: self.lease.run_id.clone(),
            step: step.clone(),
            attempt,
            idempotency_key: format!("{}/{}", self.lease.run_id, step),
            input: self.input.clone(),
            params: spec.params.clone(),
            subject: subject.clone(),
            deps,
            dep_kinds,
            cancel: self.token.clone(),
            log: StepLogger::new(step.clone(), attempt, self.logs.clone()),
        };
        let (token, abort) = (self.token.clone(), self.abort.clone());
        let grace = self.config.cancel_grace;
        let tx = self.tx.clone();
        self.observer.emit(RunEvent::StepStarted {
            step: step.clone(),
            subject,
            attempt,
        });
        let span = tracing::info_span!("step", run = %self.lease.run_id, step = %step, attempt);
        let limit = spec.timeout_ms.map(Duration::from_millis);
        async move {
            let begin = Instant::now();
            let outcome = attempt::run(handler, ctx, limit, token, grace, abort).await;
            let _ = tx.send(Msg::Ended {
                step,
                attempt,
                outcome,
                elapsed: begin.elapsed(),
            });
        }
        .instrument(span)
    }

    /// Renews the lease, flushes logs and watches for remote cancels until stopped.
    fn heartbeat(
        &self,
        mut stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let store = self.store.clone();
        let lease = self.lease.clone();
        let logs = self.logs.clone();
        let token = self.token.clone();
        let lost = self.lost.clone();
        let every = self.config.heartbeat;
        let ttl = self.config.lease_ttl;
        async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let now = now_millis();
                let t = Transition {
                    now,
                    lease_expires_at: now + ttl.as_millis() as i64,
                    logs: drain(&logs),
                    ..Transition::default()
                };
                match store.commit(&lease, &t).await {
                    Ok(ack) if ack.cancel_requested => token.cancel(),
                    Ok(_) => {}
                    Err(StoreError::StaleLease { .. }) => {
                        tracing::error!(
                            run = %lease.run_id,
                            "lease lost to another executor; stopping"
                        );
                        lost.store(true, Ordering::SeqCst);
                        token.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(run = %lease.run_id, "heartbeat failed: {e}"),
                }
            }
        }
    }
}
