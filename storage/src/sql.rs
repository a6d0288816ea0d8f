//! [`SqlStore`]: the engine's store on Postgres or SQLite, one implementation for both.

use crate::Backend;
use crate::rows::{self, db, run_columns};
use async_trait::async_trait;
use engine::{
    Ack, CancelOutcome, Created, Lease, LogLine, Millis, NewRun, RunFilter, RunRecord, RunState,
    Schedule, Store, StoreError, Transition,
};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

/// The pool of either backend.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$p` bound to whichever pool the store has; the body is
/// compiled once per backend, so both share the same SQL and logic.
macro_rules! with_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store.pool() {
            $crate::sql::Pool::Pg($p) => $body,
            $crate::sql::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Takes a run's lease if nobody holds it or the holder's has lapsed. It
/// waits for the WAL flush: a lease Postgres lost in a crash could be taken
/// again with the same epoch by the same owner (one engine executes many
/// runs), and the fence could not tell the two executors apart.
const LEASE: &str = "UPDATE runs SET lease_owner = $2, lease_epoch = lease_epoch + 1, \
    lease_expires_at = $4, updated_at = $3 \
    WHERE id = $1 AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < $3) \
    RETURNING lease_epoch";

/// The engine's [`Store`] on a SQL database.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: Pool,
}

fn to_json(value: &serde_json::Value) -> String {
    value.to_string()
}

impl SqlStore {
    pub(crate) fn postgres(pool: PgPool) -> Self {
        SqlStore {
            pool: Pool::Pg(pool),
        }
    }

    pub(crate) fn sqlite(pool: SqlitePool) -> Self {
        SqlStore {
            pool: Pool::Sqlite(pool),
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Pg(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The Postgres pool, for components that share the database (the queue).
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Pg(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, for components that share the database (the queue).
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Pg(_) => None,
        }
    }

    /// Brings the schema up to date; safe to run from several processes at once.
    pub(crate) async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut last = None;
        for _ in 0..3 {
            let result = match &self.pool {
                Pool::Pg(p) => {
                    // Keep in step with crate::PG_SCHEMA.
                    match sqlx::query("CREATE SCHEMA IF NOT EXISTS nix_infra")
                        .execute(p)
                        .await
                    {
                        // A concurrent creator may win the race; the schema exists either way.
                        Ok(_) | Err(sqlx::Error::Database(_)) => {}
                        Err(e) => return Err(e),
                    }
                    sqlx::migrate!("./migrations/postgres").run(p).await
                }
                Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            };
            match result {
                Ok(()) => return Ok(()),
                // Another process applying the same migration: re-check.
                Err(e) => last = Some(e),
            }
        }
        Err(sqlx::Error::Migrate(Box::new(
            last.expect("three attempts"),
        )))
    }

    /// Runs a raw statement; for tests and benchmarks that measure the database itself.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        with_pool!(self, p => {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            Ok(q.execute(p).await.map_err(db)?.rows_affected())
        })
    }

    /// Every text value stored in the engine's tables, for leak checks.
    pub async fn dump_text(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        let queries = [
            "SELECT id || ' ' || input || ' ' || plan || ' ' || COALESCE(error, '') AS t FROM runs",
            "SELECT step || ' ' || COALESCE(output, '') || ' ' || COALESCE(error, '') AS t FROM attempts",
            "SELECT line AS t FROM logs",
        ];
        for q in queries {
            let rows = with_pool!(self, p => {
                let rows = sqlx::query(q).fetch_all(p).await.map_err(db)?;
                rows.iter()
                    .map(|r| sqlx::Row::try_get::<String, _>(r, "t").map_err(db))
                    .collect::<Result<Vec<_>, _>>()?
            });
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn create_run(&self, run: &NewRun) -> Result<Created, StoreError> {
        let (from_run, from_step) = match &run.forked_from {
            Some((r, s)) => (Some(r.clone()), Some(s.clone())),
            None => (None, None),
        };
        let plan =
            serde_json::to_string(&run.plan).map_err(|e| StoreError::Database(e.to_string()))?;
        let inserted = with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(db)?;
            let inserted = sqlx::query(
                "INSERT INTO runs (id, workflow, version, input, plan, status, forked_from_run, \
                 forked_from_step, created_at, updated_at, resources) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8, $9) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&run.id)
            .bind(&run.workflow)
            .bind(run.version)
            .bind(to_json(&run.input))
            .bind(&plan)
            .bind(&from_run)
            .bind(&from_step)
            .bind(run.now)
            .bind(serde_json::to_string(&run.resources).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                == 1;
            if inserted {
                for (step, output) in &run.copied {
                    sqlx::query(
                        "INSERT INTO attempts (run_id, step, number, status, started_at, finished_at, \
                         output, copied_from) VALUES ($1, $2, 1, 'copied', $3, $3, $4, $5)",
                    )
                    .bind(&run.id)
                    .bind(step)
                    .bind(run.now)
                    .bind(to_json(output))
                    .bind(&from_run)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
            }
            tx.commit().await.map_err(db)?;
            inserted
        });
        if !inserted {
            return Ok(Created::Existing(self.load_run(&run.id).await?.run));
        }
        Ok(Created::New(run.record()))
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Lease, StoreError> {
        let epoch: Option<i64> = with_pool!(self, p => sqlx::query_scalar(LEASE)
            .bind(run_id)
            .bind(owner)
            .bind(now)
            .bind(expires_at)
            .fetch_optional(p)
            .await
            .map_err(db)?);
        if let Some(epoch) = epoch {
            return Ok(Lease {
                run_id: run_id.to_string(),
                owner: owner.to_string(),
                epoch,
            });
        }
        let holder: Option<(Option<String>, Option<i64>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT lease_owner, lease_expires_at FROM runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(p)
        .await
        .map_err(db)?);
        match holder {
            None => Err(StoreError::NotFound(run_id.to_string())),
            Some((owner, expires)) => Err(StoreError::LeaseHeld {
                run_id: run_id.to_string(),
                owner: owner.unwrap_or_default(),
                expires_at: expires.unwrap_or(now),
            }),
        }
    }

    async fn commit(&self, lease: &Lease, t: &Transition) -> Result<Ack, StoreError> {
        let p = match &self.pool {
            Pool::Pg(p) => return crate::pg_commit::commit(p, lease, t).await,
            Pool::Sqlite(p) => p,
        };
        let status = t.status.map(|s| s.as_str());
        let finished_at = t.status.filter(|s| s.is_final()).map(|_| t.now);
        {
            let mut tx = p.begin().await.map_err(db)?;
            // The fence: every write first proves the lease is still ours, and renews it.
            let cancel: Option<i64> = sqlx::query_scalar(
                "UPDATE runs SET updated_at = $3, \
                   lease_expires_at = CASE WHEN $6 = 1 THEN NULL ELSE $4 END, \
                   lease_owner = CASE WHEN $6 = 1 THEN NULL ELSE lease_owner END, \
                   status = COALESCE($7, status), \
                   error = CASE WHEN $7 IS NULL THEN error ELSE $8 END, \
                   finished_at = CASE WHEN $7 IS NULL THEN finished_at ELSE $9 END, \
                   cancel_requested = CASE WHEN $7 IS NULL THEN cancel_requested ELSE 0 END \
                 WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $5 \
                 RETURNING cancel_requested",
            )
            .bind(&lease.run_id)
            .bind(&lease.owner)
            .bind(t.now)
            .bind(t.lease_expires_at)
            .bind(lease.epoch)
            .bind(i64::from(t.release))
            .bind(status)
            .bind(&t.error)
            .bind(finished_at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let Some(cancel) = cancel else {
                return Err(StoreError::StaleLease {
                    run_id: lease.run_id.clone(),
                    epoch: lease.epoch,
                });
            };
            if t.abandon_running {
                sqlx::query(
                    "UPDATE attempts SET status = 'abandoned', finished_at = $2 \
                     WHERE run_id = $1 AND status = 'running'",
                )
                .bind(&lease.run_id)
                .bind(t.now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            for e in &t.ended {
                sqlx::query(
                    "UPDATE attempts SET status = $4, finished_at = $5, output = $6, error = $7, retry_at = $8 \
                     WHERE run_id = $1 AND step = $2 AND number = $3",
                )
                .bind(&lease.run_id)
                .bind(&e.step)
                .bind(e.number)
                .bind(e.status.as_str())
                .bind(t.now)
                .bind(e.output.as_ref().map(to_json))
                .bind(&e.error)
                .bind(e.retry_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            if !t.started.is_empty() {
                let mut q = QueryBuilder::new(
                    "INSERT INTO attempts (run_id, step, number, status, started_at) ",
                );
                q.push_values(&t.started, |mut b, s| {
                    b.push_bind(&lease.run_id)
                        .push_bind(&s.step)
                        .push_bind(s.number)
                        .push_bind("running")
                        .push_bind(t.now);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await.map_err(db)?;
            }
            // Keep each statement well under both backends' bind-parameter limits.
            for chunk in t.logs.chunks(500) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO logs (run_id, step, attempt, seq, at, level, line) ",
                );
                q.push_values(chunk, |mut b, l| {
                    b.push_bind(&lease.run_id)
                        .push_bind(&l.step)
                        .push_bind(l.attempt)
                        .push_bind(l.seq)
                        .push_bind(l.at)
                        .push_bind(&l.level)
                        .push_bind(&l.line);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await.map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok(Ack {
                cancel_requested: cancel != 0,
            })
        }
    }

    async fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        let run_sql = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");
        let attempts_sql = "SELECT step, number, status, started_at, finished_at, output, error, \
                            retry_at, copied_from FROM attempts WHERE run_id = $1 \
                            ORDER BY started_at, number, step";
        with_pool!(self, p => {
            let row = sqlx::query(run_sql)
                .bind(run_id)
                .fetch_optional(p)
                .await
                .map_err(db)?
                .ok_or_else(|| StoreError::NotFound(run_id.to_string()))?;
            let run = rows::run(&row)?;
            let attempts = sqlx::query(attempts_sql)
                .bind(run_id)
                .fetch_all(p)
                .await
                .map_err(db)?
                .iter()
                .map(rows::attempt)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RunState { run, attempts })
        })
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        with_pool!(self, p => {
            let mut q =
                QueryBuilder::new(concat!("SELECT ", run_columns!(), " FROM runs WHERE 1 = 1"));
            if let Some(w) = &filter.workflow {
                q.push(" AND workflow = ").push_bind(w);
            }
            if let Some(prefix) = &filter.id_prefix {
                q.push(" AND substr(id, 1, CAST(")
                    .push_bind(prefix.len() as i64)
                    .push(" AS INTEGER)) = ")
                    .push_bind(prefix);
            }
            if !filter.statuses.is_empty() {
                q.push(" AND status IN (");
                let mut sep = q.separated(", ");
                for s in &filter.statuses {
                    sep.push_bind(s.as_str());
                }
                q.push(")");
            }
            q.push(" ORDER BY created_at DESC, id DESC");
            if let Some(limit) = filter.limit {
                q.push(" LIMIT ").push_bind(limit);
            }
            q.build()
                .fetch_all(p)
                .await
                .map_err(db)?
                .iter()
                .map(rows::run)
                .collect()
        })
    }

    async fn logs(&self, run_id: &str, step: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        with_pool!(self, p => sqlx::query(
            "SELECT step, attempt, seq, at, level, line FROM logs \
             WHERE run_id = $1 AND ($2 IS NULL OR step = $2) ORDER BY at, step, attempt, seq",
        )
        .bind(run_id)
        .bind(step)
        .fetch_all(p)
        .await
        .map_err(db)?
        .iter()
        .map(rows::log)
        .collect())
    }

    async fn request_cancel(&self, run_id: &str, now: Millis) -> Result<CancelOutcome, StoreError> {
        let live = "UPDATE runs SET cancel_requested = 1, updated_at = $2 \
             WHERE id = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled') \
             AND lease_expires_at >= $2 RETURNING id";
        let idle = "UPDATE runs SET status = 'cancelled', error = 'cancelled', finished_at = $2, \
             updated_at = $2, lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0 \
             WHERE id = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled') \
             AND (lease_expires_at IS NULL OR lease_expires_at < $2) RETURNING id";
        // A lease can appear or lapse between the two updates; go round again then.
        for _ in 0..5 {
            let requested: Option<String> = with_pool!(self, p => sqlx::query_scalar(live)
                .bind(run_id).bind(now).fetch_optional(p).await.map_err(db)?);
            if requested.is_some() {
                return Ok(CancelOutcome::Requested);
            }
            let cancelled: Option<String> = with_pool!(self, p => sqlx::query_scalar(idle)
                .bind(run_id).bind(now).fetch_optional(p).await.map_err(db)?);
            if cancelled.is_some() {
                return Ok(CancelOutcome::Cancelled);
            }
            let run = self.load_run(run_id).await?.run;
            if run.status.is_final() {
                return Ok(CancelOutcome::AlreadyFinal(run.status));
            }
        }
        Err(StoreError::Database(format!(
            "run `{run_id}` kept changing hands while cancelling; try again"
        )))
    }

    async fn try_lock(
        &self,
        run_id: &str,
        resources: &[String],
        now: Millis,
        grace: Millis,
    ) -> Result<Option<String>, StoreError> {
        self.sql_try_lock(run_id, resources, now, grace).await
    }

    async fn unlock(&self, run_id: &str) -> Result<(), StoreError> {
        self.sql_unlock(run_id).await
    }

    async fn add_schedule(&self, schedule: &Schedule) -> Result<bool, StoreError> {
        self.sql_add_schedule(schedule).await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.sql_schedules().await
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        self.sql_set_paused(name, paused).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.sql_remove_schedule(name).await
    }

    async fn advance_schedule(&self, name: &str, to: Millis) -> Result<bool, StoreError> {
        self.sql_advance(name, to).await
    }
}
