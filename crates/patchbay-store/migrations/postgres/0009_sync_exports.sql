-- Exports: the records the host application handed to an export run,
-- waiting to be written through the connector. Stored with the run, in the
-- same transaction, before the API answers, so an accepted export is never
-- lost; each committed batch deletes the items it wrote (with the run's
-- counters and the id mappings, in one transaction), and a finished run
-- deletes what is left. `position` is the item's place in the export
-- (1, 2, …): the run's `cursor_end` is the last position written.
CREATE TABLE sync_export_items (
    run_id   BIGINT NOT NULL REFERENCES sync_runs(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    local_id TEXT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
