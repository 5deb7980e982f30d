"""Intake (受理): filing a citizen's report — a new case, or a repeat linked to the open case
of the same problem (并单, :mod:`jiesu.intake.merge`), filed in two transactions
(:mod:`jiesu.intake.filing`), refused with domain errors (:mod:`jiesu.intake.errors`) that
only the API turns into HTTP errors (``api/intake.py``).

May import ``jiesu.case``, ``jiesu.access`` and the infrastructure modules; never ``api`` or
``workflows``: the case's workflow is started and signalled by its registered names.
"""
