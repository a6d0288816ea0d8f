//! The Postgres fast path for [`engine::Store::commit`]: a whole transition in one statement.
//!
//! A chain step's transition (fence and renew the lease, end one attempt,
//! start the next, append its log lines) is one statement of data-modifying
//! CTEs with the rows passed as arrays. Postgres runs a lone statement as its
//! own transaction, so this costs one round trip and one commit. Every
//! sub-statement is guarded by the fence: with a stale lease nothing is
//! written and no row comes back.

use crate::rows::db;
use engine::{Ack, Lease, StoreError, Transition};
use sqlx::PgPool;

const COMMIT: &str = "\
WITH fence AS (
    SELECT cancel_requested FROM runs
    WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $5
    FOR NO KEY UPDATE
), run AS (
    UPDATE runs SET updated_at = $3,
        lease_expires_at = CASE WHEN $6 THEN NULL ELSE $4 END,
        lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END,
        status = COALESCE($7, status),
        error = CASE WHEN $7 IS NULL THEN error ELSE $8 END,
        finished_at = CASE WHEN $7 IS NULL THEN finished_at ELSE $9 END,
        cancel_requested = CASE WHEN $7 IS NULL THEN cancel_requested ELSE 0 END
    WHERE id = $1 AND ($25 OR $6 OR $7 IS NOT NULL) AND EXISTS (SELECT 1 FROM fence)
), abandoned AS (
    UPDATE attempts SET status = 'abandoned', finished_at = $3
    WHERE $10 AND run_id = $1 AND status = 'running' AND EXISTS (SELECT 1 FROM fence)
), ended AS (
    UPDATE attempts AS a
    SET status = e.status, finished_at = $3, output = e.output, error = e.error, retry_at = e.retry_at
    FROM unnest($11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::bigint[])
        AS e (step, number, status, output, error, retry_at)
    WHERE a.run_id = $1 AND a.step = e.step AND a.number = e.number
      AND EXISTS (SELECT 1 FROM fence)
), started AS (
    INSERT INTO attempts (run_id, step, number, status, started_at)
    SELECT $1, s.step, s.number, 'running', $3
    FROM unnest($17::text[], $18::bigint[]) AS s (step, number)
    WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT DO NOTHING
), logged AS (
    INSERT INTO logs (run_id, step, attempt, seq, at, level, line)
    SELECT $1, l.step, l.attempt, l.seq, l.at, l.level, l.line
    FROM unnest($19::text[], $20::bigint[], $21::bigint[], $22::bigint[], $23::text[], $24::text[])
        AS l (step, attempt, seq, at, level, line)
    WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT DO NOTHING
)
SELECT cancel_requested FROM fence";

/// Applies `t` under `lease` in one statement.
pub(crate) async fn commit(
    pool: &PgPool,
    lease: &Lease,
    t: &Transition,
) -> Result<Ack, StoreError> {
    let status = t.status.map(|s| s.as_str());
    let finished_at = t.status.filter(|s| s.is_final()).map(|_| t.now);
    // Renew the lease when nothing else happens (a heartbeat); step commits
    // only need the fence, and the heartbeat keeps the lease alive.
    let renew = t.ended.is_empty() && t.started.is_empty();
    let e = &t.ended;
    let l = &t.logs;
    let cancel: Option<i64> = sqlx::query_scalar(COMMIT)
        .bind(&lease.run_id)
        .bind(&lease.owner)
        .bind(t.now)
        .bind(t.lease_expires_at)
        .bind(lease.epoch)
        .bind(t.release)
        .bind(status)
        .bind(&t.error)
        .bind(finished_at)
        .bind(t.abandon_running)
        .bind(e.iter().map(|x| x.step.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|x| x.number).collect::<Vec<_>>())
        .bind(e.iter().map(|x| x.status.as_str()).collect::<Vec<_>>())
        .bind(
            e.iter()
                .map(|x| x.output.as_ref().map(|v| v.to_string()))
                .collect::<Vec<_>>(),
        )
        .bind(e.iter().map(|x| x.error.as_deref()).collect::<Vec<_>>())
        .bind(e.iter().map(|x| x.retry_at).collect::<Vec<_>>())
        .bind(
            t.started
                .iter()
                .map(|x| x.step.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(t.started.iter().map(|x| x.number).collect::<Vec<_>>())
        .bind(l.iter().map(|x| x.step.as_str()).collect::<Vec<_>>())
        .bind(l.iter().map(|x| x.attempt).collect::<Vec<_>>())
        .bind(l.iter().map(|x| x.seq).collect::<Vec<_>>())
        .bind(l.iter().map(|x| x.at).collect::<Vec<_>>())
        .bind(l.iter().map(|x| x.level.as_str()).collect::<Vec<_>>())
        .bind(l.iter().map(|x| x.line.as_str()).collect::<Vec<_>>())
        .bind(renew)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    match cancel {
        Some(c) => Ok(Ack {
            cancel_requested: c != 0,
        }),
        None => Err(StoreError::StaleLease {
            run_id: lease.run_id.clone(),
            epoch: lease.epoch,
        }),
    }
}
