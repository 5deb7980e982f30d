"""Why an intake was not filed. The API turns each into its HTTP answer (``api/intake.py``);
nothing here knows about HTTP."""

from __future__ import annotations


class IntakeError(Exception):
    """An intake that was not filed: ``code`` is the machine-readable reason clients see."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class IntakeRefused(IntakeError):
    """The report itself does not fit: a bad ``received_at``, an unknown category or grid."""


class IdempotencyConflict(IntakeError):
    """The Idempotency-Key was used before for a different report."""

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_reused", "this Idempotency-Key was used for a different complaint"
        )


class IntakeContended(IntakeError):
    """The same problem changed under the intake round after round; the client may retry."""

    def __init__(self) -> None:
        super().__init__("intake_contended", "the same problem changed repeatedly; retry")


class TemporalUnavailable(IntakeError):
    """Temporal could not be reached; the report is kept (or removed) so a retry is safe."""

    def __init__(self) -> None:
        super().__init__("temporal_unavailable", "the workflow service (Temporal) is unavailable")
