-- A department merged away or abolished (机构改革) is retired from a moment on instead of
-- deleted: cases name it and its past figures need it (jiesu/admin/departments.py). From
-- retired_at on, routing passes over it, nobody can give it a case or make it a co-handler,
-- and no account is opened in it; NULL: in service.
ALTER TABLE departments ADD COLUMN retired_at timestamptz;

-- A retirement can be undone (恢复启用): the change log names that action.
ALTER TABLE admin_changes DROP CONSTRAINT admin_changes_action_check;
ALTER TABLE admin_changes ADD CONSTRAINT admin_changes_action_check
    CHECK (action IN ('create', 'update', 'delete', 'retire', 'reinstate'));
