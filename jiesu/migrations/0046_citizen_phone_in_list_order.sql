-- 工单查询 by phone (api/console/lookup.py) read every case of the phone on every page: the
-- index of 0036 finds a phone's intakes in no order, so a page joined each of them to its
-- case (cases_pkey) to sort them by received_at and keep 50. A phone with 100,000 cases (a
-- walk-in desk's, a grid worker's, a repeat caller's) read 402,506 blocks for a page's rows
-- (0.8 s) and 368,538-402,306 for its counts (python -m bench.boards --cases 1000000
-- --records 1000 --repeat 3 --lookup-only; docs/performance.md, "工单查询 by phone, a page
-- at a time"): now 357 for the rows (about 1 ms).
--
-- Now the phone's intakes in the list's order (received_at DESC, case_id: an intake's
-- received_at is its case's, both written from the one report's, jiesu.intake.filing), so
-- a page reads its own 50 from a position and stops, and 共 N 件 counts the index's entries.
-- The normal form of the phone (citizen_phone_digits) is stored as a generated column, not
-- indexed as an expression: an expression index is never read index-only (PostgreSQL needs
-- payload itself to check the expression), so the count fetched every intake's row. STORED
-- is recomputed whenever the row is written.
-- A later CREATE OR REPLACE of citizen_phone_digits must rewrite it as well as REINDEX
-- (0037, 0040 did REINDEX only): ALTER TABLE intakes ALTER COLUMN citizen_phone SET
-- EXPRESSION AS (...) recomputes every row.
--
-- The index is on intakes, written when a case is filed (pending, then started) and never
-- again: no case update writes it (an index on cases would be written by every event of
-- every case). It replaces intakes_citizen_phone, which nothing else reads.
ALTER TABLE intakes ADD COLUMN citizen_phone text
    GENERATED ALWAYS AS (citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone'))
    STORED;
CREATE INDEX intakes_citizen_phone_listed ON intakes (citizen_phone, received_at DESC, case_id)
    WHERE state = 'started' AND citizen_phone IS NOT NULL;
DROP INDEX intakes_citizen_phone;
