"""Exceptions raised by the generation pipeline; the Celery layer retries only `TransientError`."""
from __future__ import annotations


class PipelineError(Exception):
    """Base of pipeline failures: `message` is shown to users, `detail` is for logs only."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class TransientError(PipelineError):
    """A backend timed out, refused the connection or answered 5xx; retrying may succeed."""


class PermanentError(PipelineError):
    """A failure that retrying cannot fix (malformed backend answer, encoder error)."""


class ValidationError(PipelineError):
    """Bad job input (params or script); `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        # Keep both parts in args so the exception survives pickling (Celery result backends).
        self.args = (field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class JobCancelled(Exception):
    """The job was cancelled; deliberately not a PipelineError so nobody retries or reports it as a failure."""

    def __init__(self, message: str = "job was cancelled") -> None:
        super().__init__(message)
