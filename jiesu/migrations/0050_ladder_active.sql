-- 督办中的工单 (the supervisors' board) and the gauge jiesu_open_cases_supervised listed every
-- open case whose escalation_level was above 0 — the last step any of its ladders reached,
-- never reset — so a case whose ladder had stopped (the unit did what it was supervised for)
-- stayed "under supervision" until it closed (red team v30,
-- tests/test_v30_attacks.py::test_a_case_whose_ladder_stopped_is_not_on_the_ladder_board).
-- ladder_active: a ladder of the case is climbing now (the case's escalation.active), written
-- by the projection with the rest of the row.
ALTER TABLE cases ADD COLUMN ladder_active boolean NOT NULL DEFAULT false;

UPDATE cases SET ladder_active = true
WHERE status <> 'closed' AND escalation_level > 0
  AND coalesce((state -> 'escalation' ->> 'active')::boolean, false);

DROP INDEX cases_on_ladder;
CREATE INDEX cases_on_ladder ON cases (escalation_level DESC, received_at)
    WHERE status <> 'closed' AND ladder_active;

DROP INDEX cases_open_gauges;
CREATE INDEX cases_open_gauges ON cases (status) INCLUDE (breaches, escalation_level, ladder_active)
    WHERE status <> 'closed';
