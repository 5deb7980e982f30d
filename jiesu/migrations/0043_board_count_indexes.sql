-- The supervisors' boards (派单督办) and the auditor's search (审计查询) count every row of
-- their rule (jiesu.readmodel.boards, api.cases.count), not only the rows they list. Measured
-- with EXPLAIN (ANALYZE) over 200,000 generated cases and 200,000 accountability records
-- (python -m bench.boards; docs/performance.md, "The boards' counts"), three counts read
-- every row of their table, or every open case, for a number:
--
-- 问责待完善 (records without persons or decision): a sequential scan of the records, 14 ms;
-- its list the same scan and a sort. The incomplete records are few: an index of them only,
-- in the list's order, serves the list (its first 200) and the count (0.2 ms).
CREATE INDEX accountability_records_incomplete
    ON accountability_records (recorded_at DESC, case_id, seq)
    WHERE cardinality(persons) = 0 OR decision = '';
-- 督办中的工单 (open cases on the supervision ladder): every open case read through
-- cases_open_by_category to find the few on the ladder (1.7 ms). An index of those only, in
-- the board's order (0.1 ms).
CREATE INDEX cases_on_ladder ON cases (escalation_level DESC, received_at)
    WHERE status <> 'closed' AND escalation_level > 0;
-- 审计查询 by category: no index starts with the category for closed cases, so its count was
-- a sequential scan of every case (41 ms at 200,000; 1.6 ms with this index). In the search's
-- order (received_at DESC, case_id), as 0033's.
CREATE INDEX cases_category ON cases (category_id, received_at DESC, case_id);
