"""The job state machine: status constants and the one table of allowed transitions (pure, no Django)."""
from __future__ import annotations

QUEUED = "queued"  # waiting for a worker; a new attempt starts here
PROCESSING = "processing"  # a worker holds the job and reports progress
COMPLETED = "completed"  # finished with a result; never changes again
FAILED = "failed"  # gave up with an error message; only an explicit retry re-queues it
CANCELLED = "cancelled"  # stopped on request; only an explicit retry re-queues it

STATUSES = (QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
UNFINISHED = frozenset({QUEUED, PROCESSING})
RETRYABLE = frozenset({FAILED, CANCELLED})

STATUS_CHOICES = [(s, s.capitalize()) for s in STATUSES]

# Every allowed move; anything else is refused. processing -> queued is a new attempt after a lost
# worker; failed/cancelled -> queued happens only through an explicit retry (see RETRY_TRANSITIONS).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({PROCESSING, CANCELLED, FAILED}),
    PROCESSING: frozenset({COMPLETED, FAILED, CANCELLED, QUEUED}),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    COMPLETED: frozenset(),
}
RETRY_TRANSITIONS: dict[str, frozenset[str]] = {FAILED: frozenset({QUEUED}), CANCELLED: frozenset({QUEUED})}


def can_transition(current: str, target: str, *, retry: bool = False) -> bool:
    """Whether `current -> target` is allowed (`retry` admits the explicit-retry moves)."""
    if target in TRANSITIONS.get(current, frozenset()):
        return True
    return retry and target in RETRY_TRANSITIONS.get(current, frozenset())


def is_terminal(status: str) -> bool:
    return status in TERMINAL
