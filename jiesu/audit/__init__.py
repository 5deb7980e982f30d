"""Auditing: loading a case's Temporal history (or its archived copy), the timeline decoded
from it, replay verification, the consistency check against the read model, the archive,
and detecting stuck cases.

May import ``jiesu.case`` and the infrastructure modules. The workflow classes a replay needs
are passed in by the caller (the API or ``jiesu.ops``), never imported here.
"""
