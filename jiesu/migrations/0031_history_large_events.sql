-- A case records `history_large` when its Temporal history passes the server's warning limits
-- (workflows/complaint.py, history-watch-v1). `jiesu doctor` looks every open such case up on
-- each run, among millions of events: through this index, not the table.
CREATE INDEX case_events_history_large ON case_events (case_id, seq) WHERE kind = 'history_large';
