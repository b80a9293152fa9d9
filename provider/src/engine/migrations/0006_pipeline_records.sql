-- lode's cluster schema, version 6: each miner's pipeline records (sectors, their tasks, deal
-- pieces and their indexes), so that a standby provider on another machine takes over what the
-- leader wrote. One row per key of the pipeline's ordered trees (`tree` is the tree's code, see
-- provider/src/pipeline/kv.rs); written only in transactions that hold the miner's leader lease
-- row `FOR SHARE` and find its epoch unchanged.
CREATE TABLE lode_pipeline (
    miner BIGINT NOT NULL,
    tree  SMALLINT NOT NULL,
    key   BYTEA NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (miner, tree, key)
);
