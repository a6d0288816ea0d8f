//! The Postgres fast path for [`engine::Store::commit`]: a whole transition in one statement.
//!
//! A chain step's transition (fence the lease, end one attempt, start the
//! next, append its log lines) is one statement of data-modifying CTEs with
//! the rows passed as arrays. Postgres runs a lone statement as its own
//! transaction, so this costs one round trip and one commit. Every
//! sub-statement is guarded by the fence: with a stale lease nothing is
//! written and no row comes back.
//!
//! The statement holds only the parts a transition needs (a heartbeat is the
//! fence and a lease renewal; a chain step the fence, one end and one start),
//! because each unused part still costs planning and executor start-up.

use crate::rows::db;
use engine::{Ack, Lease, StoreError, Transition};
use sqlx::PgPool;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use std::sync::OnceLock;

const FENCE: &str = "fence AS (
    SELECT cancel_requested FROM runs
    WHERE id = :run AND lease_owner = :owner AND lease_epoch = :epoch
    FOR NO KEY UPDATE)";

const RUN: &str = "run AS (
    UPDATE runs SET updated_at = :now,
        lease_expires_at = CASE WHEN :release THEN NULL ELSE :expires END,
        lease_owner = CASE WHEN :release THEN NULL ELSE lease_owner END,
        status = COALESCE(:status, status),
        error = CASE WHEN :status IS NULL THEN error ELSE :error END,
        finished_at = CASE WHEN :status IS NULL THEN finished_at ELSE :finished END,
        cancel_requested = CASE WHEN :status IS NULL THEN cancel_requested ELSE 0 END
    WHERE id = :run AND EXISTS (SELECT 1 FROM fence))";

const ABANDON: &str = "abandoned AS (
    UPDATE attempts SET status = 'abandoned', finished_at = :now
    WHERE run_id = :run AND status = 'running' AND EXISTS (SELECT 1 FROM fence))";

const ENDED: &str = "ended AS (
    UPDATE attempts AS a
    SET status = e.status, finished_at = :now, output = e.output, error = e.error, retry_at = e.retry_at
    FROM unnest(:e_step::text[], :e_number::bigint[], :e_status::text[], :e_output::text[],
                :e_error::text[], :e_retry::bigint[])
        AS e (step, number, status, output, error, retry_at)
    WHERE a.run_id = :run AND a.step = e.step AND a.number = e.number
      AND EXISTS (SELECT 1 FROM fence))";

/// One ended attempt: a primary-key update, which a generic plan handles well
/// (the array form's join makes Postgres scan every attempt of the run).
const ENDED_ONE: &str = "ended AS (
    UPDATE attempts SET status = :e1_status, finished_at = :now, output = :e1_output,
        error = :e1_error, retry_at = :e1_retry
    WHERE run_id = :run AND step = :e1_step AND number = :e1_number
      AND EXISTS (SELECT 1 FROM fence))";

/// One started attempt. A commit retried after an answer that never came
/// finds its row there already and writes nothing: a plain insert after a
/// key lookup, not `ON CONFLICT`, whose speculative insertion costs a WAL
/// record of its own (`HEAP_CONFIRM`) and an index pass on every step. A
/// retry that races the first try (still running after its connection was
/// lost) waits for it on the fence's row lock, then fails on the key and is
/// retried again, and that retry finds the row.
const STARTED_ONE: &str = "started AS (
    INSERT INTO attempts (run_id, step, number, status, started_at)
    SELECT :run, :s1_step, :s1_number, 'running', :now
    WHERE EXISTS (SELECT 1 FROM fence) AND NOT EXISTS (
        SELECT 1 FROM attempts WHERE run_id = :run AND step = :s1_step AND number = :s1_number))";

const STARTED: &str = "started AS (
    INSERT INTO attempts (run_id, step, number, status, started_at)
    SELECT :run, s.step, s.number, 'running', :now
    FROM unnest(:s_step::text[], :s_number::bigint[]) AS s (step, number)
    WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT DO NOTHING)";

const LOGGED: &str = "logged AS (
    INSERT INTO logs (run_id, step, attempt, seq, at, level, line)
    SELECT :run, l.step, l.attempt, l.seq, l.at, l.level, l.line
    FROM unnest(:l_step::text[], :l_attempt::bigint[], :l_seq::bigint[], :l_at::bigint[],
                :l_level::text[], :l_line::text[])
        AS l (step, attempt, seq, at, level, line)
    WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT DO NOTHING)";

/// A statement for one combination of parts, with `$N` numbering and the names to bind in order.
struct Shape {
    sql: String,
    params: Vec<&'static str>,
}

/// The parts, in statement order; bit `i` of a shape key selects `PARTS[i]`.
const PARTS: [&str; 7] = [RUN, ABANDON, ENDED_ONE, ENDED, STARTED_ONE, STARTED, LOGGED];

/// Which parts a transition needs, as bits of [`PARTS`].
fn shape_key(t: &Transition, touch_run: bool) -> u8 {
    let (e, s) = (t.ended.len(), t.started.len());
    u8::from(touch_run)
        | u8::from(t.abandon_running) << 1
        | u8::from(e == 1) << 2
        | u8::from(e > 1) << 3
        | u8::from(s == 1) << 4
        | u8::from(s > 1) << 5
        | u8::from(!t.logs.is_empty()) << 6
}

/// Renders the statement for `key`, turning `:name` placeholders into `$N`.
fn render(key: u8) -> Shape {
    let parts = PARTS;
    let mut ctes = vec![FENCE];
    ctes.extend(
        parts
            .iter()
            .enumerate()
            .filter(|(i, _)| key & (1 << i) != 0)
            .map(|(_, p)| *p),
    );
    let text = format!(
        "WITH {} SELECT cancel_requested FROM fence",
        ctes.join(", ")
    );
    let mut sql = String::with_capacity(text.len());
    let mut params: Vec<&'static str> = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(':') {
        sql.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        // `::type` is a cast, not a placeholder.
        if let Some(cast) = after.strip_prefix(':') {
            sql.push_str("::");
            rest = cast;
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = NAMES
            .iter()
            .find(|n| **n == &after[..len])
            .unwrap_or_else(|| panic!("unknown placeholder `{}`", &after[..len]));
        let n = match params.iter().position(|p| p == name) {
            Some(n) => n + 1,
            None => {
                params.push(name);
                params.len()
            }
        };
        sql.push_str(&format!("${n}"));
        rest = &after[len..];
    }
    sql.push_str(rest);
    Shape { sql, params }
}

#[rustfmt::skip]
const NAMES: &[&str] = &[
    "run", "owner", "epoch", "now", "release", "expires", "status", "error", "finished",
    "e_step", "e_number", "e_status", "e_output", "e_error", "e_retry", "s_step", "s_number",
    "l_step", "l_attempt", "l_seq", "l_at", "l_level", "l_line", "e1_step", "e1_number",
    "e1_status", "e1_output", "e1_error", "e1_retry", "s1_step", "s1_number",
];

fn shape(key: u8) -> &'static Shape {
    static SHAPES: [OnceLock<Shape>; 128] = [const { OnceLock::new() }; 128];
    SHAPES[usize::from(key)].get_or_init(|| render(key))
}

type Scalar<'q> = QueryScalar<'q, sqlx::Postgres, i64, PgArguments>;

fn bind<'q>(q: Scalar<'q>, name: &str, lease: &'q Lease, t: &'q Transition) -> Scalar<'q> {
    let (e, s, l) = (&t.ended, &t.started, &t.logs);
    match name {
        "run" => q.bind(&lease.run_id),
        "owner" => q.bind(&lease.owner),
        "epoch" => q.bind(lease.epoch),
        "now" => q.bind(t.now),
        "release" => q.bind(t.release),
        "expires" => q.bind(t.lease_expires_at),
        "status" => q.bind(t.status.map(|s| s.as_str())),
        "error" => q.bind(&t.error),
        "finished" => q.bind(t.status.filter(|s| s.is_final()).map(|_| t.now)),
        "e_step" => q.bind(e.iter().map(|x| x.step.as_str()).collect::<Vec<_>>()),
        "e_number" => q.bind(e.iter().map(|x| x.number).collect::<Vec<_>>()),
        "e_status" => q.bind(e.iter().map(|x| x.status.as_str()).collect::<Vec<_>>()),
        "e_output" => q.bind(
            e.iter()
                .map(|x| x.output.as_ref().map(|v| v.to_string()))
                .collect::<Vec<_>>(),
        ),
        "e_error" => q.bind(e.iter().map(|x| x.error.as_deref()).collect::<Vec<_>>()),
        "e_retry" => q.bind(e.iter().map(|x| x.retry_at).collect::<Vec<_>>()),
        "s_step" => q.bind(s.iter().map(|x| x.step.as_str()).collect::<Vec<_>>()),
        "s_number" => q.bind(s.iter().map(|x| x.number).collect::<Vec<_>>()),
        "l_step" => q.bind(l.iter().map(|x| x.step.as_str()).collect::<Vec<_>>()),
        "l_attempt" => q.bind(l.iter().map(|x| x.attempt).collect::<Vec<_>>()),
        "l_seq" => q.bind(l.iter().map(|x| x.seq).collect::<Vec<_>>()),
        "l_at" => q.bind(l.iter().map(|x| x.at).collect::<Vec<_>>()),
        "l_level" => q.bind(l.iter().map(|x| x.level.as_str()).collect::<Vec<_>>()),
        "l_line" => q.bind(l.iter().map(|x| x.line.as_str()).collect::<Vec<_>>()),
        "e1_step" => q.bind(&e[0].step),
        "e1_number" => q.bind(e[0].number),
        "e1_status" => q.bind(e[0].status.as_str()),
        "e1_output" => q.bind(e[0].output.as_ref().map(|v| v.to_string())),
        "e1_error" => q.bind(&e[0].error),
        "e1_retry" => q.bind(e[0].retry_at),
        "s1_step" => q.bind(&s[0].step),
        "s1_number" => q.bind(s[0].number),
        other => unreachable!("unknown placeholder {other}"),
    }
}

/// Applies `t` under `lease` in one statement.
pub(crate) async fn commit(
    pool: &PgPool,
    lease: &Lease,
    t: &Transition,
) -> Result<Ack, StoreError> {
    // Step commits only need the fence; the run row changes for a status, a
    // release, or a renewal when nothing else happens (a heartbeat).
    let renew = t.ended.is_empty() && t.started.is_empty();
    let touch_run = renew || t.release || t.status.is_some();
    let shape = shape(shape_key(t, touch_run));
    // The text is assembled only from the constant fragments above.
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(shape.sql.as_str()));
    for name in &shape.params {
        q = bind(q, name, lease, t);
    }
    match q.fetch_optional(pool).await.map_err(db)? {
        Some(c) => Ok(Ack {
            cancel_requested: c != 0,
        }),
        None => Err(StoreError::StaleLease {
            run_id: lease.run_id.clone(),
            epoch: lease.epoch,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_numbers_its_placeholders_densely() {
        for key in 0..128u8 {
            let s = render(key);
            assert!(!s.sql.contains(" :") && !s.sql.contains("(:"), "{}", s.sql);
            for (i, _) in s.params.iter().enumerate() {
                assert!(s.sql.contains(&format!("${}", i + 1)));
            }
            assert!(!s.sql.contains(&format!("${}", s.params.len() + 1)));
        }
        let chain_step = render(0b0010100);
        assert!(chain_step.sql.contains("ended AS") && chain_step.sql.contains("started AS"));
        assert!(!chain_step.sql.contains("unnest"), "{}", chain_step.sql);
        assert!(!chain_step.sql.contains("logged AS") && !chain_step.sql.contains("run AS"));
    }
}
