-- The statistics refresh finds the cases changed since the previous refresh by the
-- transaction that wrote them instead of by a time (jiesu.stats.rollup).
--
-- It used to look for cases.updated_at later than the previous refresh minus 30 s. But
-- updated_at is now() — its transaction's start — and a transaction can commit long after it
-- started: it waited on a row lock, the disk stalled, a synchronous standby was slow. Such a
-- change was never picked up, and its day's figures stayed wrong until another case of that
-- day changed (tests/test_stats_refresher.py::test_a_projection_that_commits_late_is_counted).
-- No margin, and no stamp taken inside the transaction, can bound when it becomes visible.
--
-- Now every write of a case row records its transaction's id (changed_xid), and a refresh
-- keeps the snapshot it read the changes with (seen_snapshot): the next refresh recomputes
-- the days of the rows whose writer that snapshot did not see — however late it committed.
ALTER TABLE cases ADD COLUMN changed_xid xid8;  -- NULL: written before this migration

CREATE FUNCTION cases_mark_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END $$;
-- A trigger, not each writer's SQL: no writer (the projection, the backfill, a repair by
-- hand, a migration) can change a case without the statistics seeing it.
CREATE TRIGGER cases_changed BEFORE INSERT OR UPDATE ON cases
    FOR EACH ROW EXECUTE FUNCTION cases_mark_changed();

-- A refresh reads the rows from its previous snapshot's oldest running transaction on: few.
CREATE INDEX cases_changed ON cases (changed_xid) WHERE changed_xid IS NOT NULL;
DROP INDEX cases_updated;  -- only the refresh read it

ALTER TABLE case_stats_refresh DROP COLUMN seen_updated_at;
-- Rebuild the rollup at the next refresh (the worker's refresher does it in the background):
-- it has no snapshot yet, and the figures a late commit left wrong are corrected.
DELETE FROM case_stats_refresh;
ALTER TABLE case_stats_refresh ADD COLUMN seen_snapshot pg_snapshot NOT NULL;
