//! Decoding rows of either backend into engine records.

use engine::{AttemptRecord, LogLine, RunRecord, Schedule, StoreError};
use sqlx::{ColumnIndex, Decode, Row, Type};

/// What a row type must decode for the engine's tables (both backends qualify).
pub(crate) trait EngineRow: Row
where
    for<'a> &'a str: ColumnIndex<Self>,
{
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
}

impl<R> EngineRow for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.try_get::<String, _>(col).map_err(db)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.try_get::<Option<String>, _>(col).map_err(db)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.try_get::<i64, _>(col).map_err(db)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.try_get::<Option<i64>, _>(col).map_err(db)
    }
}

/// Maps a driver error into the engine's error type.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("corrupt {what} in database: {e}"))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// The columns [`run`] decodes, as a literal for `concat!` (sqlx wants static SQL).
macro_rules! run_columns {
    () => {
        "id, workflow, version, input, plan, status, error, forked_from_run, forked_from_step, \
         cancel_requested, lease_owner, lease_epoch, lease_expires_at, created_at, updated_at, \
         finished_at, resources"
    };
}
pub(crate) use run_columns;

pub(crate) fn run<R: EngineRow>(row: &R) -> Result<RunRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    let forked_from = match (
        row.opt_text("forked_from_run")?,
        row.opt_text("forked_from_step")?,
    ) {
        (Some(r), Some(s)) => Some((r, s)),
        _ => None,
    };
    Ok(RunRecord {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        version: row.int("version")?,
        input: json("run input", &row.text("input")?)?,
        plan: json("run plan", &row.text("plan")?)?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| corrupt("run status", e))?,
        error: row.opt_text("error")?,
        forked_from,
        resources: json("run resources", &row.text("resources")?)?,
        cancel_requested: row.int("cancel_requested")? != 0,
        lease_owner: row.opt_text("lease_owner")?,
        lease_epoch: row.int("lease_epoch")?,
        lease_expires_at: row.opt_int("lease_expires_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        finished_at: row.opt_int("finished_at")?,
    })
}

pub(crate) fn attempt<R: EngineRow>(row: &R) -> Result<AttemptRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(AttemptRecord {
        step: row.text("step")?,
        number: row.int("number")?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| corrupt("attempt status", e))?,
        started_at: row.int("started_at")?,
        finished_at: row.opt_int("finished_at")?,
        output: row
            .opt_text("output")?
            .map(|t| json("step output", &t))
            .transpose()?,
        error: row.opt_text("error")?,
        retry_at: row.opt_int("retry_at")?,
        copied_from: row.opt_text("copied_from")?,
    })
}

pub(crate) fn log<R: EngineRow>(row: &R) -> Result<LogLine, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(LogLine {
        step: row.text("step")?,
        attempt: row.int("attempt")?,
        seq: row.int("seq")?,
        at: row.int("at")?,
        level: row.text("level")?,
        line: row.text("line")?,
    })
}

pub(crate) fn schedule<R: EngineRow>(row: &R) -> Result<Schedule, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(Schedule {
        name: row.text("name")?,
        cron: row.text("cron")?,
        tz: row.text("tz")?,
        workflow: row.text("workflow")?,
        input: json("schedule input", &row.text("input")?)?,
        catch_up: row
            .text("catch_up")?
            .parse()
            .map_err(|e| corrupt("schedule catch-up", e))?,
        resources: json("schedule resources", &row.text("resources")?)?,
        paused: row.int("paused")? != 0,
        last_fire: row.int("last_fire")?,
        created_at: row.int("created_at")?,
    })
}
