-- 工单查询's normal form of a phone number (migration 0036) dropped China's country code only
-- when written 86 / +86; written 0086 (the international prefix, as common), it kept it, so
-- "0086 138 1234 5678" at intake and "138 1234 5678" said by the caller were two numbers. Now
-- the SMS channel's rule (jiesu.channels.sms.phone_forms): 86 or 0086 before a mobile number
-- is dropped. The indexes on the function are rebuilt with it (an index holds the function's
-- old results; REINDEX runs in the migration's transaction).
CREATE OR REPLACE FUNCTION citizen_phone_digits(phone text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT CASE WHEN d ~ '^(00)?861[3-9][0-9]{9}$' THEN right(d, 11) ELSE d END
        FROM (SELECT regexp_replace(phone, '[^0-9]', '', 'g') AS d) AS digits
    $$;

REINDEX INDEX intakes_citizen_phone;
REINDEX INDEX repeat_reports_citizen_phone;
