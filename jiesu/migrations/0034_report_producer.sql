-- The run that stored a report snapshot (the report workflow's id and run id). A retried
-- produce_report of the same run (the worker stored the snapshot and died before Temporal heard
-- of it) replaces the content without counting a second generation (jiesu.stats.queries).
-- NULL for the rows stored before, and for a report stored outside a workflow.
ALTER TABLE report_snapshots ADD COLUMN produced_by text;
