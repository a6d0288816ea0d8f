-- The engine's tables (SQLite: same columns and semantics as the Postgres schema).
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          INTEGER NOT NULL,
    input            TEXT NOT NULL,
    plan             TEXT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    forked_from_run  TEXT,
    forked_from_step TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_workflow_status ON runs (workflow, status);

-- No foreign keys to runs: every write is fenced on the run's row (see the Postgres schema).
CREATE TABLE attempts (
    run_id      TEXT NOT NULL,
    step        TEXT NOT NULL,
    number      INTEGER NOT NULL,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    output      TEXT,
    error       TEXT,
    retry_at    INTEGER,
    copied_from TEXT,
    PRIMARY KEY (run_id, step, number)
);

CREATE TABLE logs (
    run_id  TEXT NOT NULL,
    step    TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    level   TEXT NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (run_id, step, attempt, seq)
);
