-- jiesu doctor's citizen_not_told (jiesu/health/checks.py _NOT_TOLD): the citizens' notices the
-- outbox skipped (no phone that takes an SMS, no e-mail; 0039), read on every doctor run and
-- every /metrics recompute. A partial index, so that a run reads those notices only, not the
-- whole outbox (every notice ever sent). Not measured at scale. Plain CREATE INDEX, as in 0033:
-- a migration runs in its own transaction, where CONCURRENTLY is refused.
CREATE INDEX notifications_citizens_not_told ON notifications (created_at)
    WHERE status = 'skipped' AND recipient_kind = 'citizen';
