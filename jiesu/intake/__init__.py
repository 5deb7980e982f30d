"""Intake (受理): filing a citizen's report — a new case, or a repeat linked to the open case
of the same problem (并单, :mod:`jiesu.intake.merge`).

May import ``jiesu.case``, ``jiesu.access`` and the infrastructure modules; never ``api`` or
``workflows``. (The two-transaction filing itself, ``api/intake.py``, moves here next: issue
10, item 2 — it still raises HTTP errors and starts the workflow by class.)
"""
