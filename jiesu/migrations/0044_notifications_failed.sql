-- jiesu doctor's notification_failed (jiesu/health/checks.py _FAILED): the notices the outbox
-- gave up on, newest first, read on every doctor run and every /metrics recompute. A partial
-- index, so that a run reads those notices only (backwards, LIMIT rows), not the whole outbox
-- (every notice ever sent): 0004's notifications_due holds pending and sending rows only.
-- Plain CREATE INDEX, as in 0033: a migration runs in its own transaction.
CREATE INDEX notifications_failed ON notifications (created_at) WHERE status = 'failed';
