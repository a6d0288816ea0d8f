//! [`MemoryStore`]: an in-process [`Store`] for examples and engine unit tests.
//!
//! It follows the same contract as the SQL stores (the conformance suite in
//! `tests/` runs against all three), but nothing survives the process.

use crate::model::{
    AttemptRecord, AttemptStatus, LogLine, Millis, RunFilter, RunRecord, RunState, RunStatus,
    Schedule,
};
use crate::store::{Ack, CancelOutcome, Created, Lease, NewRun, Store, StoreError, Transition};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct Data {
    runs: BTreeMap<String, RunRecord>,
    attempts: BTreeMap<String, Vec<AttemptRecord>>,
    logs: BTreeMap<String, Vec<LogLine>>,
    locks: BTreeMap<String, (String, Millis)>,
    schedules: BTreeMap<String, Schedule>,
}

/// A [`Store`] kept in memory.
#[derive(Default)]
pub struct MemoryStore(Mutex<Data>);

impl MemoryStore {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, run: &NewRun) -> Result<Created, StoreError> {
        let mut d = self.data();
        if let Some(existing) = d.runs.get(&run.id) {
            return Ok(Created::Existing(existing.clone()));
        }
        let record = run.record();
        let copied = run
            .copied
            .iter()
            .map(|(step, output)| AttemptRecord {
                step: step.clone(),
                number: 1,
                status: AttemptStatus::Copied,
                started_at: run.now,
                finished_at: Some(run.now),
                output: Some(output.clone()),
                error: None,
                retry_at: None,
                copied_from: run.forked_from.as_ref().map(|(r, _)| r.clone()),
            })
            .collect();
        d.attempts.insert(run.id.clone(), copied);
        d.runs.insert(run.id.clone(), record.clone());
        Ok(Created::New(record))
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Lease, StoreError> {
        let mut d = self.data();
        let run = d
            .runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::NotFound(run_id.into()))?;
        if let (Some(holder), Some(until)) = (&run.lease_owner, run.lease_expires_at)
            && until >= now
        {
            return Err(StoreError::LeaseHeld {
                run_id: run_id.into(),
                owner: holder.clone(),
                expires_at: until,
            });
        }
        run.lease_owner = Some(owner.into());
        run.lease_epoch += 1;
        run.lease_expires_at = Some(expires_at);
        run.updated_at = now;
        Ok(Lease {
            run_id: run_id.into(),
            owner: owner.into(),
            epoch: run.lease_epoch,
        })
    }

    async fn commit(&self, lease: &Lease, t: &Transition) -> Result<Ack, StoreError> {
        let mut d = self.data();
        let Data {
            runs,
            attempts,
            logs,
            ..
        } = &mut *d;
        let run = runs
            .get_mut(&lease.run_id)
            .filter(|r| {
                r.lease_epoch == lease.epoch && r.lease_owner.as_deref() == Some(&lease.owner)
            })
            .ok_or_else(|| StoreError::StaleLease {
                run_id: lease.run_id.clone(),
                epoch: lease.epoch,
            })?;
        let ack = Ack {
            cancel_requested: run.cancel_requested,
        };
        run.updated_at = t.now;
        run.lease_expires_at = Some(t.lease_expires_at);
        let list = attempts.entry(lease.run_id.clone()).or_default();
        if t.abandon_running {
            for a in list
                .iter_mut()
                .filter(|a| a.status == AttemptStatus::Running)
            {
                a.status = AttemptStatus::Abandoned;
                a.finished_at = Some(t.now);
            }
        }
        for e in &t.ended {
            if let Some(a) = list
                .iter_mut()
                .find(|a| a.step == e.step && a.number == e.number)
            {
                a.status = e.status;
                a.finished_at = Some(t.now);
                a.output = e.output.clone();
                a.error = e.error.clone();
                a.retry_at = e.retry_at;
            }
        }
        for s in &t.started {
            if !list
                .iter()
                .any(|a| a.step == s.step && a.number == s.number)
            {
                list.push(AttemptRecord {
                    step: s.step.clone(),
                    number: s.number,
                    status: AttemptStatus::Running,
                    started_at: t.now,
                    finished_at: None,
                    output: None,
                    error: None,
                    retry_at: None,
                    copied_from: None,
                });
            }
        }
        logs.entry(lease.run_id.clone())
            .or_default()
            .extend(t.logs.iter().cloned());
        if let Some(status) = t.status {
            run.status = status;
            run.error = t.error.clone();
            run.cancel_requested = false;
            run.finished_at = status.is_final().then_some(t.now);
        }
        if t.release {
            run.lease_owner = None;
            run.lease_expires_at = None;
        }
        Ok(ack)
    }

    async fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        let d = self.data();
        let run = d
            .runs
            .get(run_id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(run_id.into()))?;
        let attempts = d.attempts.get(run_id).cloned().unwrap_or_default();
        Ok(RunState { run, attempts })
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let d = self.data();
        let mut runs: Vec<RunRecord> = d
            .runs
            .values()
            .filter(|r| filter.workflow.as_ref().is_none_or(|w| &r.workflow == w))
            .filter(|r| filter.statuses.is_empty() || filter.statuses.contains(&r.status))
            .filter(|r| {
                filter
                    .id_prefix
                    .as_ref()
                    .is_none_or(|p| r.id.starts_with(p.as_str()))
            })
            .cloned()
            .collect();
        runs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        runs.truncate(filter.limit.unwrap_or(i64::MAX) as usize);
        Ok(runs)
    }

    async fn logs(&self, run_id: &str, step: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        let d = self.data();
        Ok(d.logs
            .get(run_id)
            .into_iter()
            .flatten()
            .filter(|l| step.is_none_or(|s| l.step == s))
            .cloned()
            .collect())
    }

    async fn request_cancel(&self, run_id: &str, now: Millis) -> Result<CancelOutcome, StoreError> {
        let mut d = self.data();
        let run = d
            .runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::NotFound(run_id.into()))?;
        if run.status.is_final() {
            return Ok(CancelOutcome::AlreadyFinal(run.status));
        }
        if run.lease_expires_at.is_some_and(|t| t >= now) {
            run.cancel_requested = true;
            return Ok(CancelOutcome::Requested);
        }
        run.status = RunStatus::Cancelled;
        run.error = Some("cancelled".into());
        run.finished_at = Some(now);
        run.updated_at = now;
        run.lease_owner = None;
        run.lease_expires_at = None;
        Ok(CancelOutcome::Cancelled)
    }

    async fn try_lock(
        &self,
        run_id: &str,
        resources: &[String],
        now: Millis,
        grace: Millis,
    ) -> Result<Option<String>, StoreError> {
        let mut d = self.data();
        for r in resources {
            if let Some((holder, taken)) = d.locks.get(r)
                && holder != run_id
                && d.runs.get(holder).is_some_and(|h| {
                    !h.status.is_final()
                        && (h.lease_expires_at.is_some_and(|t| t >= now) || *taken >= now - grace)
                })
            {
                return Ok(Some(holder.clone()));
            }
        }
        for r in resources {
            d.locks.insert(r.clone(), (run_id.to_string(), now));
        }
        Ok(None)
    }

    async fn unlock(&self, run_id: &str) -> Result<(), StoreError> {
        self.data().locks.retain(|_, (holder, _)| holder != run_id);
        Ok(())
    }

    async fn add_schedule(&self, schedule: &Schedule) -> Result<bool, StoreError> {
        let mut d = self.data();
        if d.schedules.contains_key(&schedule.name) {
            return Ok(false);
        }
        d.schedules.insert(schedule.name.clone(), schedule.clone());
        Ok(true)
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        Ok(self.data().schedules.values().cloned().collect())
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        Ok(self
            .data()
            .schedules
            .get_mut(name)
            .map(|s| s.paused = paused)
            .is_some())
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.data().schedules.remove(name).is_some())
    }

    async fn advance_schedule(&self, name: &str, to: Millis) -> Result<bool, StoreError> {
        let mut d = self.data();
        match d.schedules.get_mut(name) {
            Some(s) if s.last_fire < to => {
                s.last_fire = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
