-- The engine's tables; they live in the `nix_infra` schema (the connection's search_path).
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          BIGINT NOT NULL,
    input            TEXT NOT NULL,
    plan             TEXT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    forked_from_run  TEXT,
    forked_from_step TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_epoch      BIGINT NOT NULL DEFAULT 0,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_workflow_status ON runs (workflow, status);

-- Attempts and logs carry no foreign key to runs: every write to them is
-- fenced on the run's row in the same statement, which already proves the run
-- exists, and the key check would cost a fifth of a step's commit.
CREATE TABLE attempts (
    run_id      TEXT NOT NULL,
    step        TEXT NOT NULL,
    number      BIGINT NOT NULL,
    status      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    output      TEXT,
    error       TEXT,
    retry_at    BIGINT,
    copied_from TEXT,
    PRIMARY KEY (run_id, step, number)
);

CREATE TABLE logs (
    run_id  TEXT NOT NULL,
    step    TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    level   TEXT NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (run_id, step, attempt, seq)
);
