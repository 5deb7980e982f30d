-- What changes a day's statistics without a write of one of its cases (jiesu.stats.rollup).
--
-- The incremental refresh recomputes the days of the cases written by transactions its
-- previous snapshot did not see (migration 0028). Three changes move figures without such a
-- write, and the days they touched kept their old figures until a full rebuild:
--
-- - a department's level changes (a township becomes a county-level unit: the admin API,
--   `jiesu admin departments put`), or a department is deleted or made again: the rollup's
--   `level` dimension is the department's level (figures by level, Filter.LEVEL), read when
--   its days were last recomputed. Figures by level count a department at its level today,
--   as the ranking and the raw cases do (docs/statistics.md, "Levels");
-- - a case row is deleted (Jiesu never deletes one; a hand-written DELETE), or its
--   received_at is changed by hand (the projection never changes it): its old day kept it;
-- - TRUNCATE of cases (row triggers do not fire for it): every day kept its figures.
--
-- Each is recorded here, stamped with its transaction's id like cases.changed_xid: the next
-- refresh its snapshot did not see recomputes the days of that department's cases and
-- handlings, the deleted case's day, or everything (a TRUNCATE) — however late it commits.
-- A refresh deletes the rows its snapshot saw: the table holds a handful of rows at most.
CREATE TABLE case_stats_changes (
    changed_xid   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    department_id text,         -- a department whose level changed (or that came or went)
    received_at   timestamptz,  -- the receipt of a case row deleted (or moved to another day)
    -- both NULL: every day (the cases were truncated)
    CHECK (department_id IS NULL OR received_at IS NULL)
);

CREATE FUNCTION departments_level_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO case_stats_changes (department_id) VALUES (OLD.id);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND (TG_OP = 'INSERT' OR NEW.id <> OLD.id) THEN
        INSERT INTO case_stats_changes (department_id) VALUES (NEW.id);
    END IF;
    RETURN NULL;
END $$;
-- A rename changes no stored figure (names are joined when a figure is read).
CREATE TRIGGER departments_level_changed AFTER UPDATE ON departments
    FOR EACH ROW WHEN (OLD.level IS DISTINCT FROM NEW.level OR OLD.id <> NEW.id)
    EXECUTE FUNCTION departments_level_changed();
CREATE TRIGGER departments_come_and_gone AFTER INSERT OR DELETE ON departments
    FOR EACH ROW EXECUTE FUNCTION departments_level_changed();

CREATE FUNCTION cases_left_a_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO case_stats_changes (received_at) VALUES (OLD.received_at);
    RETURN NULL;
END $$;
CREATE TRIGGER cases_deleted AFTER DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION cases_left_a_day();
CREATE TRIGGER cases_moved AFTER UPDATE OF received_at ON cases
    FOR EACH ROW WHEN (OLD.received_at IS DISTINCT FROM NEW.received_at)
    EXECUTE FUNCTION cases_left_a_day();

CREATE FUNCTION cases_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO case_stats_changes DEFAULT VALUES;  -- every day: the next refresh rebuilds
    RETURN NULL;
END $$;
CREATE TRIGGER cases_truncated AFTER TRUNCATE ON cases
    FOR EACH STATEMENT EXECUTE FUNCTION cases_truncated();

-- Rebuild the rollup at the next refresh (the worker's refresher does it in the background):
-- days a level change or a deletion left wrong before this migration are corrected.
DELETE FROM case_stats_refresh;
