//! [`Engine`]: the operations users call — start, execute (resume), cancel, fork, list, show, logs.

use crate::events::Observer;
use crate::executor::{Controls, Execution};
use crate::model::{AttemptStatus, LogLine, RunFilter, RunRecord, RunState, RunStatus, now_millis};
use crate::store::{CancelOutcome, Created, NewRun, Store, StoreError};
use crate::workflow::Registry;
use crate::{EngineConfig, EngineError, RunOutcome};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Checks a caller-supplied run id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn validate_run_id(id: &str) -> Result<(), EngineError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidRunId(id.to_string()))
    }
}

/// A fresh, time-ordered run id.
pub fn new_run_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// The engine: a store, the known workflows and the execution settings.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    config: EngineConfig,
    watchers: Vec<crate::events::Watcher>,
}

impl Engine {
    /// An engine over `store` knowing `registry`'s workflows, with default settings.
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Self {
        Engine {
            store,
            registry: Arc::new(registry),
            config: EngineConfig::default(),
            watchers: Vec::new(),
        }
    }

    /// Adds a watcher: every execution's events also go where it says.
    pub fn watch(mut self, watcher: crate::events::Watcher) -> Self {
        self.watchers.push(watcher);
        self
    }

    /// Replaces the execution settings.
    pub fn with_config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The execution settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The known workflows.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Plans and records a run without executing it.
    ///
    /// With a caller-supplied `run_id` this is idempotent: a second call with
    /// the same workflow and input returns the existing run; a different
    /// workflow or input under that id is [`EngineError::RunIdConflict`].
    pub async fn create(
        &self,
        workflow: &str,
        input: serde_json::Value,
        run_id: Option<String>,
    ) -> Result<Created, EngineError> {
        self.create_with(workflow, input, run_id, Vec::new()).await
    }

    /// Like [`Engine::create`], with extra resources to lock besides the workflow's own.
    pub async fn create_with(
        &self,
        workflow: &str,
        input: serde_json::Value,
        run_id: Option<String>,
        extra_resources: Vec<String>,
    ) -> Result<Created, EngineError> {
        let wf = self.workflow(workflow)?;
        if let Some(id) = &run_id {
            validate_run_id(id)?;
        }
        let plan = wf.plan(&input)?;
        let mut resources = wf.resources_for(&input);
        resources.extend(extra_resources);
        resources.sort();
        resources.dedup();
        let run = NewRun {
            id: run_id.unwrap_or_else(new_run_id),
            workflow: wf.name().to_string(),
            version: wf.version(),
            input,
            plan,
            forked_from: None,
            copied: Vec::new(),
            resources,
            now: now_millis(),
        };
        let created = self.store.create_run(&run).await?;
        if let Created::Existing(existing) = &created
            && (existing.workflow != run.workflow || existing.input != run.input)
        {
            return Err(EngineError::RunIdConflict {
                id: run.id,
                workflow: existing.workflow.clone(),
            });
        }
        Ok(created)
    }

    /// Executes a run until it reaches a final status: the first execution, or a resume.
    ///
    /// Completed steps are never re-run; failed, cancelled and abandoned steps
    /// get fresh attempts. If another executor's lease is live, this waits for
    /// it to lapse once; if that executor renews it, this fails with
    /// [`EngineError::Busy`].
    pub async fn execute(
        &self,
        run_id: &str,
        cancel: CancellationToken,
        observer: Observer,
    ) -> Result<RunOutcome, EngineError> {
        self.execute_with(run_id, cancel, CancellationToken::new(), observer)
            .await
    }

    /// Like [`Engine::execute`], and when `suspend` fires: start no more steps,
    /// let running ones finish (up to `cancel_grace`), then hand the run back
    /// (status `pending`, lease released) for another executor to continue.
    pub async fn execute_with(
        &self,
        run_id: &str,
        cancel: CancellationToken,
        suspend: CancellationToken,
        observer: Observer,
    ) -> Result<RunOutcome, EngineError> {
        let state = self.store.load_run(run_id).await?;
        self.execute_loaded(state, cancel, suspend, observer).await
    }

    /// Like [`Engine::execute_with`], for a run the caller has just read.
    pub async fn execute_loaded(
        &self,
        state: RunState,
        cancel: CancellationToken,
        suspend: CancellationToken,
        observer: Observer,
    ) -> Result<RunOutcome, EngineError> {
        if state.run.status == RunStatus::Succeeded {
            return Ok(RunOutcome::from_record(&state.run));
        }
        let run_id = state.run.id.as_str();
        let wf = self.workflow(&state.run.workflow)?;
        wf.check_kinds(&state.run.plan)?;
        let lease = self.acquire(run_id, &cancel).await?;
        // If anyone held the run since it was read, it may have written more:
        // read it again under the lease. Writes need a lease, so an epoch that
        // rose by exactly ours on an unleased run means nothing changed.
        let untouched = state.run.lease_owner.is_none() && lease.epoch == state.run.lease_epoch + 1;
        let state = if untouched {
            state
        } else {
            self.store.load_run(run_id).await?
        };
        let observer = self
            .watchers
            .iter()
            .fold(observer, |o, w| o.merge(w(&state.run)));
        Execution::run(
            self.store.clone(),
            self.config.clone(),
            lease,
            wf,
            state,
            Controls {
                cancel,
                suspend,
                observer,
            },
        )
        .await
    }

    async fn acquire(
        &self,
        run_id: &str,
        cancel: &CancellationToken,
    ) -> Result<crate::store::Lease, EngineError> {
        let mut seen_expiry = None;
        loop {
            let now = now_millis();
            let until = now + self.config.lease_ttl.as_millis() as i64;
            match self
                .store
                .acquire_lease(run_id, &self.config.owner, now, until)
                .await
            {
                Ok(lease) => return Ok(lease),
                Err(StoreError::LeaseHeld {
                    owner, expires_at, ..
                }) => {
                    if seen_expiry.is_some_and(|seen| expires_at > seen) {
                        return Err(EngineError::Busy {
                            run_id: run_id.to_string(),
                            owner,
                        });
                    }
                    seen_expiry = Some(expires_at);
                    let wait = Duration::from_millis((expires_at - now).max(0) as u64 + 50);
                    tracing::info!(
                        run = run_id,
                        %owner,
                        "waiting {wait:?} for the previous executor's lease to lapse"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return Err(EngineError::Interrupted),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Asks a run to stop; a run nobody executes is cancelled at once.
    pub async fn cancel(&self, run_id: &str) -> Result<CancelOutcome, EngineError> {
        Ok(self.store.request_cancel(run_id, now_millis()).await?)
    }

    /// Creates a new run from `run_id`'s plan that keeps the outputs of every
    /// step not downstream of `step` and re-runs `step` and everything after it.
    pub async fn fork(
        &self,
        run_id: &str,
        step: &str,
        new_id: Option<String>,
    ) -> Result<RunRecord, EngineError> {
        if let Some(id) = &new_id {
            validate_run_id(id)?;
        }
        let parent = self.store.load_run(run_id).await?;
        self.workflow(&parent.run.workflow)?;
        if parent.run.plan.step(step).is_none() {
            return Err(EngineError::UnknownStep {
                run_id: run_id.to_string(),
                step: step.to_string(),
            });
        }
        let rerun = parent.run.plan.downstream_of(step);
        let copied = parent
            .attempts
            .iter()
            .filter(|a| matches!(a.status, AttemptStatus::Succeeded | AttemptStatus::Copied))
            .filter(|a| !rerun.contains(&a.step))
            .map(|a| (a.step.clone(), a.output.clone().unwrap_or_default()))
            .collect();
        let run = NewRun {
            id: new_id.unwrap_or_else(new_run_id),
            workflow: parent.run.workflow.clone(),
            version: parent.run.version,
            input: parent.run.input.clone(),
            plan: parent.run.plan.clone(),
            forked_from: Some((run_id.to_string(), step.to_string())),
            copied,
            resources: parent.run.resources.clone(),
            now: now_millis(),
        };
        match self.store.create_run(&run).await? {
            Created::New(r) => Ok(r),
            Created::Existing(r) => Err(EngineError::RunIdConflict {
                id: r.id,
                workflow: r.workflow,
            }),
        }
    }

    /// Reads a run and all its attempts.
    pub async fn load(&self, run_id: &str) -> Result<RunState, EngineError> {
        Ok(self.store.load_run(run_id).await?)
    }

    /// Lists runs, newest first.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.store.list_runs(filter).await?)
    }

    /// Reads a run's log lines, optionally of one step.
    pub async fn logs(
        &self,
        run_id: &str,
        step: Option<&str>,
    ) -> Result<Vec<LogLine>, EngineError> {
        self.store.load_run(run_id).await?;
        Ok(self.store.logs(run_id, step).await?)
    }

    fn workflow(&self, name: &str) -> Result<Arc<crate::Workflow>, EngineError> {
        self.registry
            .get(name)
            .ok_or_else(|| EngineError::UnknownWorkflow {
                name: name.to_string(),
                known: self.registry.iter().map(|w| w.name().to_string()).collect(),
            })
    }
}
