-- The sign-in log (登录记录): one row per staff session, written when the session's row is
-- purged from staff_sessions (jiesu.access.sessions.purge_ended, by the hourly archive job).
-- Sign-ins are audit evidence: who worked in a session, from when to when, and how it ended.
-- The session's row also holds its secrets (the token's hash, the CSRF token), which have no
-- use once it has ended; this log keeps the evidence without them, for good. Append-only like
-- admin_changes: the trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE staff_sign_ins (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staff_id     bigint NOT NULL REFERENCES staff (id),
    signed_in_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    ended_why    text NOT NULL,               -- logout, disabled, password_set, ...; idle, expired
    moved_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_sign_ins_staff ON staff_sign_ins (staff_id, signed_in_at);

CREATE FUNCTION staff_sign_ins_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'staff_sign_ins is append-only';
END $$;
CREATE TRIGGER staff_sign_ins_no_update BEFORE UPDATE OR DELETE ON staff_sign_ins
    FOR EACH ROW EXECUTE FUNCTION staff_sign_ins_append_only();
CREATE TRIGGER staff_sign_ins_no_truncate BEFORE TRUNCATE ON staff_sign_ins
    FOR EACH STATEMENT EXECUTE FUNCTION staff_sign_ins_append_only();

-- The purge finds the sessions past their absolute end (every session has ended by then).
CREATE INDEX staff_sessions_expires ON staff_sessions (expires_at);

-- A session's end, said once: logged out, disabled... as recorded; else idle or expired at the
-- moment that came first, once it has come (NULL while the session is open).
CREATE VIEW staff_session_ends AS
SELECT s.token_hash, s.staff_id, s.created_at, s.last_seen_at, s.expires_at,
       coalesce(s.ended_at, CASE WHEN e.at <= now() THEN e.at END) AS ended_at,
       coalesce(s.ended_why, CASE WHEN e.at <= now() THEN e.why END) AS ended_why
FROM staff_sessions s,
     LATERAL (SELECT least(s.expires_at, s.last_seen_at + s.idle_timeout) AS at,
                     CASE WHEN s.last_seen_at + s.idle_timeout < s.expires_at
                          THEN 'idle' ELSE 'expired' END AS why) e;

-- Every sign-in, purged or not, in one place for auditors.
CREATE VIEW sign_ins AS
SELECT p.login, i.signed_in_at, i.last_seen_at, i.ended_at, i.ended_why
FROM staff_sign_ins i JOIN staff p ON p.id = i.staff_id
UNION ALL
SELECT p.login, e.created_at, e.last_seen_at, e.ended_at, e.ended_why
FROM staff_session_ends e JOIN staff p ON p.id = e.staff_id;
