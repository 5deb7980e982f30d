-- Rate limits (jiesu/rate_limits.py: one-time SMS codes, self-service reports, failed
-- authentications, mails filed and replied) were counted in each process's memory: N API
-- replicas let N times a bound through, a restart forgot every count. Now one row per hit,
-- here, where every process sees the same count and a restart keeps it.
--
-- key is HMAC(server secret, name|key) computed by the application: no phone number, client
-- address or sender address is stored (as otp_codes keeps its phones). expires_at is the hit
-- plus the longest window of its limit: a row past it counts in no window any more and is
-- deleted (NamedLimits.prune).
CREATE TABLE rate_limit_hits (
    name text NOT NULL,
    key text NOT NULL,
    at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX rate_limit_hits_key ON rate_limit_hits (name, key, at DESC);
CREATE INDEX rate_limit_hits_expiry ON rate_limit_hits (expires_at);

-- One check of bounds, in one round trip. The bounds are flattened into arrays, one element
-- a bound: its limit's name and key, its amount and its window in seconds (moving windows).
-- mode 'test': the first bound used up (its position, 1-based, and the seconds until it lets
--   one more through), or no row; counts nothing.
-- mode 'take': the same, and when no bound is used up, one hit for each (name, key): the
--   check and the count under a transaction-level lock of each (name, key), so two requests
--   at once cannot both see the last slot free (whoever waits re-reads after the lock: each
--   statement of a VOLATILE PL/pgSQL function takes a new snapshot in READ COMMITTED).
-- mode 'count': one hit for each (name, key), whatever the bounds say.
-- The clock is the database's (clock_timestamp(), after the lock): every process agrees.
CREATE FUNCTION rate_limit_hit(
    names text[], keys text[], amounts integer[], seconds double precision[], mode text
) RETURNS TABLE (bound integer, retry_after double precision)
    LANGUAGE plpgsql VOLATILE
    AS $$
DECLARE
    moment timestamptz;
BEGIN
    IF mode <> 'test' THEN
        -- in a fixed order: two takes of the same keys never wait for each other in a circle
        PERFORM pg_advisory_xact_lock(hashtext('jiesu:rate-limits'), hashtext(d.n || '|' || d.k))
        FROM (SELECT DISTINCT u.n, u.k FROM unnest(names, keys) AS u (n, k) ORDER BY 1, 2) AS d;
    END IF;
    moment := clock_timestamp();
    IF mode <> 'count' THEN
        RETURN QUERY
        SELECT b.i::integer, b.s + extract(epoch FROM h.at - moment)::double precision
        FROM unnest(names, keys, amounts, seconds) WITH ORDINALITY AS b (n, k, a, s, i)
        CROSS JOIN LATERAL (
            -- the a-th newest hit inside the window: the bound is used up until it leaves
            SELECT r.at FROM rate_limit_hits AS r
            WHERE r.name = b.n AND r.key = b.k AND r.at > moment - b.s * interval '1 second'
            ORDER BY r.at DESC OFFSET b.a - 1 LIMIT 1
        ) AS h
        ORDER BY b.i LIMIT 1;
        IF FOUND OR mode = 'test' THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO rate_limit_hits (name, key, at, expires_at)
    SELECT u.n, u.k, moment, moment + max(u.s) * interval '1 second'
    FROM unnest(names, keys, seconds) AS u (n, k, s)
    GROUP BY u.n, u.k;
END
$$;
