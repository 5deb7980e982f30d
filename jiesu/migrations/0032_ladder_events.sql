-- `jiesu doctor` looks for closed cases whose read model still shows a supervision ladder
-- climbing: an `escalation_started` without its `escalation_stopped`. Every ladder of a closed
-- case has stopped in its workflow, so such a case missed the stop's projection (cases closed
-- before project-after-close-v1, bench/faults.py run 9). Through these indexes, not the table.
CREATE INDEX case_events_ladder_started ON case_events (case_id) WHERE kind = 'escalation_started';
CREATE INDEX case_events_ladder_stopped ON case_events (case_id) WHERE kind = 'escalation_stopped';
