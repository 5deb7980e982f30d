"""Health (巡检): the doctor's read-only examination of an installation — wedged workflows,
retrying activities, stale or diverged read models, overdue notices, histories that do not
replay — and its report, for the ``jiesu doctor`` command and the API's admin endpoint.

May import ``jiesu.case``, ``jiesu.audit``, ``jiesu.notify``, ``jiesu.readmodel`` and the
infrastructure modules; never ``workflows`` (the caller passes the workflow classes to replay
with).
"""
