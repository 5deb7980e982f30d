-- History archive: Temporal drops closed histories after the namespace's retention period;
-- the archive schedule copies them here first (gzip-compressed Temporal JSON, the form
-- `temporal workflow show --output json` prints and `temporalio.worker.Replayer` reads).
-- Rows are written once (ON CONFLICT DO NOTHING) and never changed.
CREATE TABLE history_archive (
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    case_id       text NOT NULL,           -- the case (parent) this history belongs to
    workflow_type text NOT NULL,
    status        text NOT NULL,           -- completed, failed, terminated, ...
    started_at    timestamptz NOT NULL,
    closed_at     timestamptz,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    event_count   int NOT NULL,
    json_bytes    int NOT NULL,            -- uncompressed size
    history_gz    bytea NOT NULL,
    PRIMARY KEY (workflow_id, run_id)
);
CREATE INDEX history_archive_case ON history_archive (case_id);
CREATE INDEX history_archive_started ON history_archive (started_at);
