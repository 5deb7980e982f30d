-- 退单驳回 (issue 14): a return the centre rejects (event return_rejected) was not the unit's to
-- make; it counts against the department that held the case in that round (the event's
-- department_id), as the measure return_rejected (jiesu/stats/indicators.py) and the
-- evaluation's deduction for rejected_return_rate (jiesu/stats/evaluation.py).
ALTER TABLE cases ADD COLUMN rejected_return_count int NOT NULL DEFAULT 0;
ALTER TABLE case_handlings ADD COLUMN rejected_return_count int NOT NULL DEFAULT 0;
ALTER TABLE case_daily_stats ADD COLUMN return_rejected int NOT NULL DEFAULT 0;

-- The rows written before this migration, from the events they were derived from.
UPDATE cases c SET rejected_return_count = r.n
FROM (SELECT case_id, count(*)::int AS n FROM case_events WHERE kind = 'return_rejected'
      GROUP BY case_id) r
WHERE r.case_id = c.case_id;
UPDATE case_handlings h SET rejected_return_count = r.n
FROM (SELECT case_id, data->>'department_id' AS department_id, count(*)::int AS n
      FROM case_events WHERE kind = 'return_rejected' GROUP BY 1, 2) r
WHERE r.case_id = h.case_id AND r.department_id = h.department_id;

-- Rebuild the rollup with the new column at the next refresh.
DELETE FROM case_stats_refresh;
