-- Data sync: runs, each stream's cursor, the records store, external-id
-- mappings and field mappings (see `src/sync.rs` for the rules).
--
-- Foreign keys: runs, cursors and field mappings reference their
-- organization (written one row at a time, like jobs and states). The two
-- bulk tables, records and id mappings, have none, like the operation log and
-- action usage: a batch writes up to thousands of rows and a per-row check
-- would cost as much as the row itself. They are only written for a scope
-- whose run (which has the foreign key) the same transaction found running.

-- One import or export of one stream. `queued` → `running` → `succeeded`,
-- `failed` or `cancelled`; a queued run may be cancelled at once, a running
-- one is asked to stop (`cancel_requested`) and stops after its batch in
-- hand. The counters are added to by every committed batch. `job_id` names
-- the job running it, without a foreign key: finished jobs are pruned long
-- before a run's history.
CREATE TABLE sync_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        TEXT NOT NULL,
    organization_id  TEXT NOT NULL,
    integration_id   TEXT NOT NULL,
    stream           TEXT NOT NULL,
    direction        TEXT NOT NULL CHECK (direction IN ('import', 'export')),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    processed        INTEGER NOT NULL DEFAULT 0,
    created          INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    total            INTEGER,
    cursor_start     TEXT,
    cursor_end       TEXT,
    error            TEXT,
    job_id           INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE
);
-- One active (queued or running) run per stream: a second is refused.
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (tenant_id, organization_id, integration_id, stream)
    WHERE status IN ('queued', 'running');
-- A scope's runs, newest first; and one integration's or stream's.
CREATE INDEX sync_runs_by_scope ON sync_runs (tenant_id, organization_id, id);
CREATE INDEX sync_runs_by_stream ON sync_runs (tenant_id, organization_id, integration_id, stream, id);

-- Each stream: its small id (`id`, what its records are keyed by instead
-- of the four text columns), the entity type its created records are mapped
-- under (the first batch's), where the next import reads from (`cursor`,
-- the connector's opaque text; NULL = from the start) and the last change
-- sequence number given to its records. Created by the stream's first
-- batch. A batch moves it by compare-and-set; a reset clears `cursor` and
-- keeps `last_seq`, so sequence numbers never repeat. Ids are never reused
-- (records have no foreign key).
CREATE TABLE sync_cursors (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    stream          TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    cursor          TEXT,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, organization_id, integration_id, stream),
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE
);

-- The records store: the latest version of every record of a stream, by
-- external id. `local_id` (`rec_<uuid v7>`) is given on insert and kept on
-- update; it is also the record's id mapping (external id ↔ local id under
-- the stream's entity type: no mapping row is written per record); `hash`
-- (the 16 bytes of the batch's hex hash) detects unchanged records, which
-- are not rewritten; `deleted` marks a record the source deleted (its last
-- data kept); `seq` is the stream's change sequence number of the record's
-- last change, so a reader pulls changes with `seq > <last seen>`. Keyed by
-- the stream's small id (`sync_cursors.id`), not its four text columns.
CREATE TABLE sync_records (
    stream_id       INTEGER NOT NULL,
    external_id     TEXT NOT NULL,
    local_id        TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    data            TEXT NOT NULL,
    hash            BLOB NOT NULL,
    deleted         INTEGER NOT NULL,
    run_id          INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (stream_id, external_id)
) WITHOUT ROWID;
-- Delta reads: a stream's records after a sequence number, in order.
CREATE UNIQUE INDEX sync_records_by_seq ON sync_records (stream_id, seq);

-- External id ↔ local id per entity type of an integration, as stored by
-- `put_id_mappings` (exported entities), and for records an import creates
-- under another entity type than their stream's (an existing pair is kept).
-- These rows win over the records store's pairs.
CREATE TABLE sync_id_mappings (
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    local_id        TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, organization_id, integration_id, entity_type, external_id)
) WITHOUT ROWID;

-- A stream's field mapping (a JSON text the engine applies to each record
-- before storing it).
CREATE TABLE sync_field_mappings (
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    stream          TEXT NOT NULL,
    mapping         TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, organization_id, integration_id, stream),
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE
);
