-- lode's cluster schema, version 2: task inputs and outputs, tasks bound to a worker, and the
-- workers' storage paths.
ALTER TABLE lode_tasks ADD COLUMN input TEXT NOT NULL DEFAULT '';
-- The worker a task must run on (where its sector's files are); not a foreign key: the task
-- waits for that worker to come back rather than losing its binding.
ALTER TABLE lode_tasks ADD COLUMN at_worker TEXT;
ALTER TABLE lode_task_history ADD COLUMN input TEXT NOT NULL DEFAULT '';
ALTER TABLE lode_task_history ADD COLUMN output TEXT;

CREATE TABLE lode_storage (
    worker     TEXT NOT NULL,
    path       TEXT NOT NULL,
    available  BIGINT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, path)
);
