-- One location per Open311 report, written on a retry too (jiesu.intake.open311.file_report):
-- the first attempt may have filed the case and died before keeping it, and a retry (same
-- Idempotency-Key) used to skip it. report_id: the repeat report's id, 0 for the case's own
-- report; rows from before have none (and no uniqueness).
ALTER TABLE open311_requests ADD COLUMN report_id bigint;
CREATE UNIQUE INDEX open311_requests_report ON open311_requests (case_id, report_id)
    WHERE report_id IS NOT NULL;
