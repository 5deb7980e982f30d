-- The staff case list (GET /api/v1/complaints, api.cases.search) orders by
-- (received_at DESC, case_id) and pages by offset. At 1,000,000 cases a grid, a grid worker's
-- overdue cases and a channel read the whole table, or tens of thousands of cases_received's
-- rows, for one page (docs/performance.md, "The case list filter by filter";
-- python -m bench.case_list). Each index ends with the list's order: a page is a range of it.
-- Measured and left out: urgency (the planner keeps cases_received, ~24 % of the cases are
-- urgent) and the department with case_id (the planner keeps cases_received for a bureau).
--
-- Plain CREATE INDEX, not CONCURRENTLY: each migration runs in its own transaction
-- (jiesu.db.migrate), where CONCURRENTLY is refused. It holds off writes to cases (not reads)
-- while it builds: 1-5 s an index at 1,000,000 cases on 2 loaded cores, once, at bootstrap.
CREATE INDEX cases_grid ON cases (grid_id, received_at DESC, case_id);
CREATE INDEX cases_channel ON cases (channel, received_at DESC, case_id);
-- Overdue (jiesu.case.sla.late_sql) depends on now(), so no index can hold it; it implies this
-- predicate (a breach recorded, or still open), which ~8 % of the cases meet.
CREATE INDEX cases_department_late ON cases (department_id, received_at DESC, case_id)
    WHERE cardinality(breaches) > 0 OR status <> 'closed';
