"""Temporal workflow definitions (deterministic, no I/O)."""

from workflows.complaint import ComplaintWorkflow
from workflows.escalation import EscalationWorkflow
from workflows.reassignment import ReassignmentWorkflow

ALL_WORKFLOWS = [ComplaintWorkflow, ReassignmentWorkflow, EscalationWorkflow]

__all__ = ["ALL_WORKFLOWS", "ComplaintWorkflow", "EscalationWorkflow", "ReassignmentWorkflow"]
