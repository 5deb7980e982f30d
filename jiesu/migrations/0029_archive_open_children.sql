-- The history archive may hold a child's history stored while the child was still open
-- (status 'running'): its case closed, the child stayed open past the archive's patience, and
-- the case could not wait for it without risking Temporal's retention (jiesu.audit.archive).
-- Every archive run looks such rows up and replaces each with its closed history once the
-- child closed: the one change a row of history_archive ever sees (0003 said "never changed").
-- They are few, and the table is large: the lookup reads this index, not the table.
CREATE INDEX history_archive_open ON history_archive (workflow_id) WHERE status = 'running';
