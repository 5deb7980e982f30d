-- 工单查询 (the console's case lookup, api/console/lookup.py): a hotline operator finds the
-- cases of a citizen who calls back by the phone number they give. The number is stored as
-- typed at intake (the Phone pattern allows "+86 138-1234-5678"), and the problem keys
-- (phone_key) lead with the category and the grid, which a caller's phone alone cannot use.
-- So: one normal form of a phone number — its digits, without China's country code before a
-- mobile number — and an index on it for the intakes and for the repeat reports (并单: the
-- caller may be a later reporter of a case), so a look-up reads the rows of that number only,
-- not the whole table. The look-up applies the same function to what the operator typed.
CREATE FUNCTION citizen_phone_digits(phone text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT CASE WHEN d ~ '^861[3-9][0-9]{9}$' THEN substr(d, 3) ELSE d END
        FROM (SELECT regexp_replace(phone, '[^0-9]', '', 'g') AS d) AS digits
    $$;

-- Plain CREATE INDEX (a migration runs in a transaction): built once, at bootstrap.
CREATE INDEX intakes_citizen_phone
    ON intakes (citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone'))
    WHERE payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL;
CREATE INDEX repeat_reports_citizen_phone
    ON repeat_reports (citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone'))
    WHERE payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL;
