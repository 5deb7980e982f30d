-- The worker's domain gauges (jiesu/health/domain_metrics.py) count the open cases by status,
-- their breaches and ladder steps, and the notices not sent, every 15 s
-- (JIESU_DOMAIN_METRICS_INTERVAL_SECONDS). Without these indexes each count read the whole
-- notifications table and every case's index entry: at 1,000,000 cases (18,611 open) and
-- 3,000,000 notices one measurement took 560–920 ms of PostgreSQL, every 15 s; with them 25 ms
-- (docs/performance.md, "The worker's gauges at 1,000,000 cases").
--
-- The open cases, with what the gauges read of them: an index-only scan.
CREATE INDEX cases_open_gauges ON cases (status) INCLUDE (breaches, escalation_level)
    WHERE status <> 'closed';
-- The notices not sent (pending, sending, failed, skipped): a few among millions.
CREATE INDEX notifications_unsent ON notifications (status) WHERE status <> 'sent';
