-- lode's cluster schema, version 5: the sector location index. A row says that a worker holds a
-- copy of a sector's files; `placed` orders the copies (the highest is the newest: where the sector
-- is). A sealing phase that leaves its sector on its worker writes the row in the statement that
-- finishes the task; a copy deleted or lost is forgotten.
CREATE SEQUENCE lode_location_order;
CREATE TABLE lode_sector_locations (
    miner      BIGINT NOT NULL,
    sector     BIGINT NOT NULL,
    worker     TEXT NOT NULL,
    placed     BIGINT NOT NULL DEFAULT nextval('lode_location_order'),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (miner, sector, worker)
);
CREATE INDEX lode_sector_locations_worker ON lode_sector_locations (worker);

-- Built from the history, as the pipeline found holders before: for each sector, the workers of
-- its newest task of each kind that leaves files, when that task succeeded, in the order they
-- finished (a task's id stands for its order).
INSERT INTO lode_sector_locations (miner, sector, worker, placed, updated_at)
SELECT miner, subject, worker, max(id), max(finished_at)
FROM (
    SELECT DISTINCT ON (miner, kind, subject) miner, kind, subject, worker, ok, id, finished_at
    FROM lode_task_history
    WHERE kind IN ('PreCommit1', 'PreCommit2', 'Commit1', 'Finalize')
    ORDER BY miner, kind, subject, id DESC
) newest
WHERE ok AND worker IS NOT NULL
GROUP BY miner, subject, worker;
SELECT setval('lode_location_order', GREATEST((SELECT max(placed) FROM lode_sector_locations), 1));
