-- Validates the two checks 0045 added NOT VALID (notifications_status_check with 'skipped' and
-- 'set_aside', notifications_set_aside_recorded): reads every notice, under SHARE UPDATE
-- EXCLUSIVE only, so intakes write their notices and the dispatcher marks them meanwhile (a
-- migration runs in its own transaction, jiesu.db.migrate: in 0045's, the validation would
-- have held 0045's ACCESS EXCLUSIVE lock until its end). On an installation that applied 0045
-- before it was split, both are validated already: nothing to do.
-- tests/test_db_migrations.py checks both: validated, and no write waited.
ALTER TABLE notifications VALIDATE CONSTRAINT notifications_status_check;
ALTER TABLE notifications VALIDATE CONSTRAINT notifications_set_aside_recorded;
