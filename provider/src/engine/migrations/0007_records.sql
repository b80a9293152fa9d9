-- lode's cluster schema, version 7: the records table holds more than the pipeline's trees (the
-- market's deals, jobs and block index too), so it is renamed, and a row's tree is named rather
-- than numbered: `<set>/<tree>` (`pipeline/sectors`, `market/deals`; see the `Trees`
-- implementations in provider/src/pipeline/kv.rs and market/src/provider/records.rs). The rows
-- of version 6 were the pipeline's, numbered in the order of the names below.
ALTER TABLE lode_pipeline RENAME TO lode_records;
ALTER INDEX lode_pipeline_pkey RENAME TO lode_records_pkey;
ALTER TABLE lode_records ALTER COLUMN tree TYPE TEXT USING (
    'pipeline/' || (ARRAY['sectors', 'meta', 'tasks', 'task_meta', 'deals', 'deal_sectors',
                          'piece_cids'])[tree + 1]
);
ALTER TABLE lode_records ADD CONSTRAINT lode_records_tree_named CHECK (tree LIKE '%/%');
