-- Whose an intake's Idempotency-Key is (jiesu.intake.filing.key_owner): a key belongs to its
-- caller, as an action's does, so one caller's key neither answers another's report nor blocks
-- it (an operator sending `Idempotency-Key: sms:<id>` took the key of that gateway message,
-- whose every delivery was then refused as a reused key). Rows filed before have no owner and
-- still answer their key; unique per owner from now on.
ALTER TABLE intakes ADD COLUMN idempotency_owner text;
ALTER TABLE repeat_reports ADD COLUMN idempotency_owner text;
ALTER TABLE intakes DROP CONSTRAINT intakes_idempotency_key_key;
ALTER TABLE repeat_reports DROP CONSTRAINT repeat_reports_idempotency_key_key;
CREATE UNIQUE INDEX intakes_idempotency ON intakes (idempotency_key, idempotency_owner);
CREATE UNIQUE INDEX repeat_reports_idempotency
    ON repeat_reports (idempotency_key, idempotency_owner);
