-- API keys get a short public id (what `jiesu keys list` shows and `jiesu keys revoke` takes)
-- and can be revoked: a revoked key stays listed (who had access, until when) but no longer
-- authenticates.

ALTER TABLE api_keys ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_id_unique UNIQUE (id);
ALTER TABLE api_keys ADD COLUMN revoked_at timestamptz;
