-- The staff case list (GET /api/v1/complaints, api.cases.search) orders by
-- (received_at DESC, case_id) and pages by offset. At 1,000,000 cases a grid and a grid
-- worker's or a committee's overdue cases read the whole table, or tens of thousands of
-- cases_received's rows, for one page (docs/performance.md, "The case list filter by filter";
-- python -m bench.case_list). Each index ends with the list's order: a page is a range of it.
-- Measured and left out: urgency and the department with case_id (the planner keeps
-- cases_received), the channel (e-mail's last page slower through it: random heap reads).
--
-- Plain CREATE INDEX, not CONCURRENTLY: each migration runs in its own transaction
-- (jiesu.db.migrate), where CONCURRENTLY is refused. It holds off writes to cases (not reads)
-- while it builds, once, at bootstrap: 9.0 s at 1,000,000 cases on 2 loaded cores, measured
-- with a third index (on the channel) built too.
CREATE INDEX cases_grid ON cases (grid_id, received_at DESC, case_id);
-- Overdue (jiesu.case.sla.late_sql) depends on now(), so no index can hold it; it implies this
-- predicate (a breach recorded, or still open), which ~8 % of the cases meet.
CREATE INDEX cases_department_late ON cases (department_id, received_at DESC, case_id)
    WHERE cardinality(breaches) > 0 OR status <> 'closed';
