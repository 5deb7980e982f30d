-- Grain 4 of the daily rollup: department × calendar month (`day` = the month's first day),
-- summed from grain 1 by every refresh (jiesu/stats/rollup.py). The ranking reads it for the
-- whole months of its period and grain 1 only for the partial months at its ends, so a
-- year-long ranking sums ~12 rows per department instead of ~365 (issue 13: every statistics
-- endpoint p95 <= 100 ms at 1,000,000 cases). Filled here from the rows already there.
ALTER TABLE case_daily_stats DROP CONSTRAINT IF EXISTS case_daily_stats_grain_check;
ALTER TABLE case_daily_stats ADD CONSTRAINT case_daily_stats_grain_check
    CHECK (grain BETWEEN 0 AND 4);
INSERT INTO case_daily_stats (grain, day, department_id, level, received, closed, in_progress,
    overdue, response_due, responded_on_time, finish_due, finished_on_time, rated, satisfied,
    resolution_judged, resolved, handled, grassroots, repeated, extended, returned)
SELECT 4, date_trunc('month', day)::date, department_id, level, sum(received), sum(closed),
    sum(in_progress), sum(overdue), sum(response_due), sum(responded_on_time), sum(finish_due),
    sum(finished_on_time), sum(rated), sum(satisfied), sum(resolution_judged), sum(resolved),
    sum(handled), sum(grassroots), sum(repeated), sum(extended), sum(returned)
FROM case_daily_stats WHERE grain = 1
GROUP BY 2, 3, 4;
CREATE INDEX case_daily_stats_month ON case_daily_stats (day) WHERE grain = 4;
