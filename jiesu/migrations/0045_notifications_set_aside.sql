-- A notice the outbox gave up on ('failed') that must never be sent: the department's mailbox
-- was wrong and the unit was phoned instead, the case closed long ago, the notice is obsolete.
-- `jiesu repair notices --set-aside KEY --reason WHY [--by NAME]` (jiesu.ops.doctor) moves it
-- from 'failed' to 'set_aside' with who, when and why. Before, the only ways to clear the
-- doctor's notification_failed finding were a resend (to the wrong address again) or an
-- UPDATE by hand that left no trace of who decided it.
--
-- Partial indexes, their predicates unchanged and still right:
-- - 0004's notifications_due (pending, sending): the dispatcher's claim never reads a
--   set-aside notice (_CLAIM takes pending and expired sending rows only);
-- - 0044's notifications_failed (failed): the doctor's notification_failed no longer lists it;
-- - 0042's notifications_unsent (<> 'sent'): a set-aside notice was not sent, and stays in it
--   (a few rows; the gauges' count names its statuses and does not count it);
-- - 0041's notifications_citizens_not_told (skipped citizens'): only skipped rows.
ALTER TABLE notifications
    ADD COLUMN set_aside_at     timestamptz,
    ADD COLUMN set_aside_by     text,
    ADD COLUMN set_aside_reason text;
--
-- Both checks are added NOT VALID: enforced on every row written from this migration on, but
-- the notices already in the outbox are not read here. This migration's transaction holds the
-- ACCESS EXCLUSIVE lock of its ALTER TABLEs (every intake's notice and the dispatcher wait
-- for it), and checking each notice under it held them 0.6–0.7 s at 2,000,000 notices
-- (bench/outbox_migration_lock.py); 0047 validates them in a transaction of its own, under
-- SHARE UPDATE EXCLUSIVE, which lets the outbox be written meanwhile. (Split in the
-- twenty-second session; an installation that applied this file before has them validated
-- already, and 0047 finds nothing to do: the same schema either way.)
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'set_aside')) NOT VALID;
-- The audit trail is whole or the row is not set aside: who, when and a reason that says
-- something. Only a set-aside row carries it.
ALTER TABLE notifications ADD CONSTRAINT notifications_set_aside_recorded CHECK (
    (status = 'set_aside') = (set_aside_at IS NOT NULL)
    AND (status <> 'set_aside' OR (btrim(coalesce(set_aside_by, '')) <> ''
                                   AND btrim(coalesce(set_aside_reason, '')) <> ''))) NOT VALID;
