-- 问责 (issue 14): the accountability records of the supervision ladder, one per
-- ``accountability_recorded`` case event (unit, persons, reason, decision). Written by the
-- read-model projection in the transaction that stores the event, keyed like the event, so a
-- retried projection stores each record once. Listed by GET /api/v1/accountability and
-- counted in the department evaluation (jiesu/stats/evaluation.py).

CREATE TABLE accountability_records (
    case_id       text NOT NULL,
    seq           int NOT NULL,
    department_id text,
    persons       text[] NOT NULL DEFAULT '{}',
    reason        text NOT NULL DEFAULT '',
    decision      text NOT NULL DEFAULT '',
    ordered       boolean NOT NULL DEFAULT false,  -- a supervisor's 问责 order, not the ladder's
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (case_id, seq)
);
CREATE INDEX accountability_records_department ON accountability_records (department_id, recorded_at);

-- The pending-extension list reads the latest extension event of each case.
CREATE INDEX case_events_extension ON case_events (case_id, seq)
    WHERE kind IN ('extension_requested', 'extension_decided', 'reassigned', 'closed');
