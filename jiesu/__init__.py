"""Jiesu (接诉即办): the packages below the API, the workflows and the activities.

Each subpackage is one concern and says what it may import. The arrows point one way
(checked by import-linter: ``[tool.importlinter]`` in pyproject.toml, run by
tests/test_architecture.py):

- ``jiesu.case``: the case's vocabulary and rules; imports nothing of ours.
- ``jiesu.access``, ``jiesu.notify``, ``jiesu.stats``, ``jiesu.audit``: services by concern;
  they import ``jiesu.case`` and the infrastructure modules, never ``api``, ``workflows``,
  ``activities`` or ``jiesu.ops``, nor each other.
- ``jiesu.readmodel`` (the read-model writer), ``jiesu.intake`` (filing and repeat reports),
  ``jiesu.health`` (the doctor's checks): services that combine the concerns above; same
  rule, and their own docstrings say which concerns they use.
- ``jiesu.config``, ``jiesu.db``, ``jiesu.client``: infrastructure (settings, PostgreSQL pool,
  Temporal client) shared by everything.
- ``jiesu.ops``: running and operating the system (CLI, embedded stack, bootstrap, demo data,
  doctor); the only package here allowed to import ``workflows`` and ``activities``.
"""
