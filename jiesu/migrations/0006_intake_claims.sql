-- Intake and repeat reports made atomic; one citizen token per report, stored hashed.
--
-- An intake row is written 'pending' in the transaction that decides "new case or repeat"
-- (under per-problem advisory locks, api/merge.py), and becomes 'started' once its workflow
-- has started (or, for a repeat, once its case has the repeat_report signal). A retry with the
-- same Idempotency-Key resumes a pending row; `api.intake.settle_pending` finishes or removes
-- the ones nobody retries.

ALTER TABLE intakes
    ADD COLUMN state       text NOT NULL DEFAULT 'started' CHECK (state IN ('pending', 'started')),
    ADD COLUMN token_hash  text,        -- sha256 of the citizen token; the token is never stored
    ADD COLUMN token_nonce text,        -- the token is HMAC(server secret, nonce): see citizen_tokens
    ADD COLUMN received_at timestamptz,
    ADD COLUMN phone_key   text,        -- the problem keys of api/merge.py
    ADD COLUMN address_key text;

-- Rows from before: hash the plaintext token (a retry of such an intake answers without one),
-- and derive the problem keys as api/merge.py does.
UPDATE intakes SET
    token_hash  = encode(sha256(convert_to(citizen_token, 'UTF8')), 'hex'),
    received_at = (payload ->> 'received_at')::timestamptz,
    phone_key   = concat_ws('|', 'phone', payload -> 'intake' ->> 'category_id',
                            payload -> 'intake' ->> 'grid_id',
                            payload -> 'intake' -> 'citizen' ->> 'phone'),
    address_key = CASE WHEN btrim(coalesce(payload -> 'intake' ->> 'address', '')) <> ''
        THEN concat_ws('|', 'address', payload -> 'intake' ->> 'category_id',
                       regexp_replace(btrim(payload -> 'intake' ->> 'address'), '\s+', ' ', 'g'))
        END;

ALTER TABLE intakes
    DROP COLUMN citizen_token,
    ALTER COLUMN token_hash SET NOT NULL,
    ALTER COLUMN received_at SET NOT NULL,
    ALTER COLUMN phone_key SET NOT NULL;

CREATE INDEX intakes_phone_key ON intakes (phone_key, received_at DESC);
CREATE INDEX intakes_address_key ON intakes (address_key, received_at DESC)
    WHERE address_key IS NOT NULL;
CREATE INDEX intakes_pending ON intakes (created_at) WHERE state = 'pending';

-- Repeat reports: each has its own token (before, none or the original citizen's).
ALTER TABLE repeat_reports
    ADD COLUMN state       text NOT NULL DEFAULT 'started' CHECK (state IN ('pending', 'started')),
    ADD COLUMN token_hash  text,
    ADD COLUMN token_nonce text;
CREATE INDEX repeat_reports_pending ON repeat_reports (created_at) WHERE state = 'pending';

-- The fallback key of citizen tokens when JIESU_TOKEN_SECRET is not set (see
-- jiesu/citizen_tokens.py for what that does and does not protect). 244 random bits.
CREATE TABLE server_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO server_secrets (name, value)
VALUES ('citizen_token', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
