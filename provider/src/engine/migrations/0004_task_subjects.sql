-- lode's cluster schema, version 4: a sector's tasks found by their subject in the history (the
-- pipeline follows each sector's phase, and finds the worker holding its files, through it).
CREATE INDEX lode_task_history_subject ON lode_task_history (miner, kind, subject, id DESC);
