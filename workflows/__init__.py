"""Temporal workflow definitions (deterministic, no I/O)."""

from workflows.complaint import ComplaintWorkflow

ALL_WORKFLOWS = [ComplaintWorkflow]

__all__ = ["ALL_WORKFLOWS", "ComplaintWorkflow"]
