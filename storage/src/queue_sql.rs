//! Locks and schedules: the rows the queue and the scheduler share, on either backend.

use crate::rows::{self, db};
use crate::sql::{Pool, SqlStore, with_pool};
use engine::{Millis, Schedule, StoreError};

const TAKE_LOCK: &str = "INSERT INTO locks (resource, run_id, taken_at) VALUES ($1, $2, $3) \
    ON CONFLICT (resource) DO UPDATE SET run_id = excluded.run_id, taken_at = excluded.taken_at \
    WHERE locks.run_id = excluded.run_id OR NOT EXISTS ( \
        SELECT 1 FROM runs r WHERE r.id = locks.run_id \
        AND r.status NOT IN ('succeeded', 'failed', 'cancelled') \
        AND ((r.lease_expires_at IS NOT NULL AND r.lease_expires_at >= $3) OR locks.taken_at >= $4))";

/// Unlocking does not wait for the WAL flush on Postgres: the run's final
/// status is durable before it unlocks, and a lock left behind by a run that
/// is final, or whose lease has lapsed past the grace, is free to take. Taking
/// a lock does wait: a lock Postgres lost in a crash could be taken by
/// another run while its first holder, which never looks again, goes on.
const UNLOCK: &str = "DELETE FROM locks WHERE run_id = $1";

const UNLOCK_UNAWAITED: &str = "WITH unawaited AS (SELECT set_config('synchronous_commit', 'off', true)) \
    DELETE FROM locks WHERE run_id = $1 AND EXISTS (SELECT 1 FROM unawaited)";

impl SqlStore {
    pub(crate) async fn sql_try_lock(
        &self,
        run_id: &str,
        resources: &[String],
        now: Millis,
        grace: Millis,
    ) -> Result<Option<String>, StoreError> {
        if resources.is_empty() {
            return Ok(None);
        }
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(db)?;
            for r in resources {
                sqlx::query(TAKE_LOCK)
                    .bind(r)
                    .bind(run_id)
                    .bind(now)
                    .bind(now - grace)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let holder: String =
                    sqlx::query_scalar("SELECT run_id FROM locks WHERE resource = $1")
                        .bind(r)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                if holder != run_id {
                    // All or none: the rollback returns what was taken so far.
                    tx.rollback().await.map_err(db)?;
                    return Ok(Some(holder));
                }
            }
            tx.commit().await.map_err(db)?;
            Ok(None)
        })
    }

    pub(crate) async fn sql_unlock(&self, run_id: &str) -> Result<(), StoreError> {
        let sql = match self.pool() {
            Pool::Pg(_) => UNLOCK_UNAWAITED,
            Pool::Sqlite(_) => UNLOCK,
        };
        with_pool!(self, p => sqlx::query(sql)
            .bind(run_id).execute(p).await.map_err(db)?.rows_affected());
        Ok(())
    }

    pub(crate) async fn sql_add_schedule(&self, s: &Schedule) -> Result<bool, StoreError> {
        let input = s.input.to_string();
        let resources = serde_json::to_string(&s.resources).unwrap_or_else(|_| "[]".into());
        let n = with_pool!(self, p => sqlx::query(
            "INSERT INTO schedules (name, cron, tz, workflow, input, catch_up, resources, paused, \
             last_fire, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&s.name)
        .bind(&s.cron)
        .bind(&s.tz)
        .bind(&s.workflow)
        .bind(&input)
        .bind(s.catch_up.as_str())
        .bind(&resources)
        .bind(i64::from(s.paused))
        .bind(s.last_fire)
        .bind(s.created_at)
        .execute(p)
        .await
        .map_err(db)?
        .rows_affected());
        Ok(n == 1)
    }

    pub(crate) async fn sql_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        with_pool!(self, p => sqlx::query(
            "SELECT name, cron, tz, workflow, input, catch_up, resources, paused, last_fire, \
             created_at FROM schedules ORDER BY name",
        )
        .fetch_all(p)
        .await
        .map_err(db)?
        .iter()
        .map(rows::schedule)
        .collect())
    }

    pub(crate) async fn sql_set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE schedules SET paused = $2 WHERE name = $1";
        let n = with_pool!(self, p => sqlx::query(sql)
            .bind(name)
            .bind(i64::from(paused))
            .execute(p)
            .await
            .map_err(db)?
            .rows_affected());
        Ok(n == 1)
    }

    pub(crate) async fn sql_remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, p => sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name).execute(p).await.map_err(db)?.rows_affected());
        Ok(n == 1)
    }

    pub(crate) async fn sql_advance(&self, name: &str, to: Millis) -> Result<bool, StoreError> {
        let n = with_pool!(self, p => sqlx::query(
            "UPDATE schedules SET last_fire = $2 WHERE name = $1 AND last_fire < $2",
        )
        .bind(name).bind(to).execute(p).await.map_err(db)?.rows_affected());
        Ok(n == 1)
    }
}
