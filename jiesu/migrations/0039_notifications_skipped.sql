-- A citizen's SMS to a number that receives none (a landline such as 010-12345678, a short
-- number) is not sent: its row stays in the outbox as 'skipped', with why in last_error
-- (jiesu.intake.follow_up writes the intake SMS so; the dispatcher marks a later one so).
-- Before, the intake SMS was queued to the landline and handed to the SMS gateway.
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped'));
