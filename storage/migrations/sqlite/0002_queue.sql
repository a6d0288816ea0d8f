-- Resources a run touches (a JSON array of names), for per-resource locks.
ALTER TABLE runs ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';

-- One row per locked resource. A lock whose run has finished, or whose run's
-- lease lapsed (its worker died), is free to take.
CREATE TABLE locks (
    resource TEXT PRIMARY KEY,
    run_id   TEXT NOT NULL,
    taken_at INTEGER NOT NULL
);
CREATE INDEX locks_by_run ON locks (run_id);

-- Cron schedules. `last_fire` only moves forward; a fire time's run id is
-- derived from it, so each fire time makes exactly one run.
CREATE TABLE schedules (
    name       TEXT PRIMARY KEY,
    cron       TEXT NOT NULL,
    tz         TEXT NOT NULL,
    workflow   TEXT NOT NULL,
    input      TEXT NOT NULL,
    catch_up   TEXT NOT NULL,
    resources  TEXT NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0,
    last_fire  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
