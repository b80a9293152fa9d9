-- lode's cluster schema, version 1: workers, the task queue, its history, leases.
CREATE TABLE lode_workers (
    name         TEXT PRIMARY KEY,
    cores        BIGINT NOT NULL,
    memory       BIGINT NOT NULL,
    gpus         BIGINT NOT NULL,
    scratch      BIGINT NOT NULL,
    kinds        TEXT[] NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX lode_workers_heartbeat ON lode_workers (heartbeat_at);

-- Fencing tokens: every claim draws the next one.
CREATE SEQUENCE lode_task_tokens;

-- Unfinished tasks only: a finished task moves to lode_task_history in the statement that
-- finishes it. A worker's row deleted (dead or shut down) frees its tasks.
CREATE TABLE lode_tasks (
    id             BIGSERIAL PRIMARY KEY,
    miner          BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    subject        BIGINT NOT NULL,
    cores          BIGINT NOT NULL,
    memory         BIGINT NOT NULL,
    gpus           BIGINT NOT NULL,
    scratch        BIGINT NOT NULL,
    time_sensitive BOOLEAN NOT NULL,
    owner          TEXT REFERENCES lode_workers (name) ON DELETE SET NULL,
    token          BIGINT NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    not_before     TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    error          TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at     TIMESTAMPTZ,
    UNIQUE (miner, kind, subject)
);
-- The claim's scan: queued tasks in claim order.
CREATE INDEX lode_tasks_queue ON lode_tasks (time_sensitive DESC, subject, id) WHERE owner IS NULL;
CREATE INDEX lode_tasks_owner ON lode_tasks (owner) WHERE owner IS NOT NULL;

CREATE TABLE lode_task_history (
    id          BIGINT PRIMARY KEY,
    miner       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    subject     BIGINT NOT NULL,
    cores       BIGINT NOT NULL,
    memory      BIGINT NOT NULL,
    gpus        BIGINT NOT NULL,
    scratch     BIGINT NOT NULL,
    attempts    INTEGER NOT NULL,
    worker      TEXT,
    ok          BOOLEAN NOT NULL,
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX lode_task_history_finished ON lode_task_history (finished_at);

-- Named leases (one chain-message sender per miner actor); the epoch grows with every new holder.
CREATE TABLE lode_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
