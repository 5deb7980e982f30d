-- A repeat report (并单) that reached its case only after the case closed (the read model was
-- behind it: a 撤诉 or closing rating sent while the worker was down) is filed again by the case
-- (activities/refile.py): refiled_as is the case it went to then, a new one or another open
-- case of the same problem. NULL: the report was counted by its case.
ALTER TABLE repeat_reports ADD COLUMN refiled_as text;
