"""基础数据: the admin's screens for reference data, the routing catalogue, the calendar,
policy values, notification templates and the change log — each form calls the same
jiesu.admin function as /api/v1/admin/... (one source of truth, no SQL here)."""

from fastapi import APIRouter

from api.console.admin import catalogue, changelog, holidays, records, tuning

router = APIRouter()
# The fixed paths first: /admin/{path} of records would take /admin/policy otherwise.
for _group in (changelog, catalogue, holidays, tuning, records):
    router.include_router(_group.router)
