-- The refused sign-ins (登录失败记录): one row per staff login that opened no session, written
-- by jiesu.access.sign_in_failures.record *after* the refused transaction has rolled back.
-- Evidence of guessing for auditors: when, the login as typed (an unknown login too: that is
-- what shows an attack; never the password nor anything derived from it), why it was refused,
-- the client address as the API saw it, and the person when the login exists.
-- Append-only like staff_sign_ins (0023): the trigger refuses UPDATE, DELETE and TRUNCATE.
-- Its growth is bounded by the failed-authentication limit (docs/operations.md).
CREATE TABLE staff_sign_in_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    login     text NOT NULL CHECK (length(login) <= 200),    -- as typed, cut to 200
    reason    text NOT NULL
              CHECK (reason IN ('login_failed', 'account_disabled', 'rate_limited')),
    client    text NOT NULL CHECK (length(client) <= 100),   -- the peer address the API saw
    staff_id  bigint REFERENCES staff (id)                   -- NULL: no such login
);
CREATE INDEX staff_sign_in_failures_at ON staff_sign_in_failures (at);
CREATE INDEX staff_sign_in_failures_login ON staff_sign_in_failures (login, at);

CREATE FUNCTION staff_sign_in_failures_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'staff_sign_in_failures is append-only';
END $$;
CREATE TRIGGER staff_sign_in_failures_no_update BEFORE UPDATE OR DELETE
    ON staff_sign_in_failures FOR EACH ROW EXECUTE FUNCTION staff_sign_in_failures_append_only();
CREATE TRIGGER staff_sign_in_failures_no_truncate BEFORE TRUNCATE ON staff_sign_in_failures
    FOR EACH STATEMENT EXECUTE FUNCTION staff_sign_in_failures_append_only();
