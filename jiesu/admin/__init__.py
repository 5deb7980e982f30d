"""Administration (管理): reference data (departments, areas, grids, categories), the routing
catalogue (派单目录) with effective dates, calendar overrides from the year's holiday notice,
run-time policy values and notification templates — each change recorded in the append-only
``admin_changes`` log (who, when, before, after).

One implementation for the admin endpoints (``api/routers/administration.py``) and the
``jiesu admin`` commands. Imports the case's vocabulary, the configuration and the notices
(for template names); nothing above it.
"""
