-- The body an action's Idempotency-Key was first used with (api/cases.py claim_key). The key's
-- request id (request_id: the caller, the case, the action and the key) makes a retry apply
-- once; this makes a key reused with another body a 422 instead of a 200 for what the first
-- body did. Kept ACTION_KEY_KEEP (30 days) by the hourly archive run; a retry later than that
-- with another body is answered with the first one's outcome, as before.
CREATE TABLE action_keys (
    request_id  text PRIMARY KEY,
    body_digest text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX action_keys_created ON action_keys (created_at);
