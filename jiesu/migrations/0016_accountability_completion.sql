-- 问责 completed by the centre (PUT /api/v1/accountability/{case}/{seq}): when a record's persons
-- and decision were last set. The statistics answers' stamp (jiesu/stats/answers.py) reads it,
-- so a completed record is in the next ranking answer instead of a kept one.
ALTER TABLE accountability_records ADD COLUMN completed_at timestamptz;
