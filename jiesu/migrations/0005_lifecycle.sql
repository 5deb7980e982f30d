-- Repeat reports (并单): a report of an open problem is linked to its case instead of opening
-- a second one. Kept here so that a retried intake (same Idempotency-Key) answers the same.
CREATE TABLE repeat_reports (
    id              bigserial PRIMARY KEY,
    case_id         text NOT NULL,
    idempotency_key text UNIQUE,
    request_hash    text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repeat_reports_case ON repeat_reports (case_id);

-- The merge look-up: open cases of a category received recently.
CREATE INDEX cases_open_by_category ON cases (category_id, received_at DESC)
    WHERE status <> 'closed';
