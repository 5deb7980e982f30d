-- 工单查询's normal form of a phone number (migrations 0036, 0037) dropped China's country code
-- before a mobile number only: a landline stored as written with it (+86 10 8765 4321, the
-- area code without its 0) was not the 010 8765 4321 a caller says, nor the reverse. Now a
-- landline after 86 or 0086 (an area code 10 or 2x and 8 digits, or 3-9xx and 7-8 digits;
-- the area code's 0 sometimes kept as "(0)") is written with its 0, as the SMS channel's
-- rule (jiesu.notify.sms.phone_forms) does. The indexes on the function are rebuilt with it.
CREATE OR REPLACE FUNCTION citizen_phone_digits(phone text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT CASE
            WHEN d ~ '^(00)?861[3-9][0-9]{9}$' THEN right(d, 11)
            WHEN d ~ '^(00)?860?((10|2[0-9])[0-9]{8}|[3-9][0-9]{2}[0-9]{7,8})$'
                THEN '0' || regexp_replace(d, '^(00)?860?', '')
            ELSE d
        END
        FROM (SELECT regexp_replace(phone, '[^0-9]', '', 'g') AS d) AS digits
    $$;

REINDEX INDEX intakes_citizen_phone;
REINDEX INDEX repeat_reports_citizen_phone;
