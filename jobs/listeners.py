"""The one place where a committed job event is handed on (dispatch to Celery, push to websockets).

The job service calls `event_committed` from `transaction.on_commit`, so listeners only ever see
events that are durably in the database. A listener that raises is logged and never breaks the caller.
Each app registers its own listener in its AppConfig.ready(): jobs the dispatcher (jobs/dispatch.py), then
realtime the publisher (realtime/publish.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommittedEvent:
    """A job's state right after one of its events was committed."""

    job_id: str
    project_id: str
    job_type: str
    seq: int
    kind: str  # "status", "progress" or "artifact"
    status: str
    previous_status: str | None
    progress: float
    current_stage: str
    error_message: str | None
    result: Any
    attempt: int
    message: str = ""
    external: bool = False  # the caller's own task does the work: nothing to dispatch
    data: dict | None = None  # an artifact event's message fields: {"kind", "name", "url", "scene", "reused"}


Listener = Callable[[CommittedEvent], None]
_listeners: list[Listener] = []


def register_listener(listener: Listener) -> None:
    """Add a listener (idempotent: registering the same function twice keeps one)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unregister_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def event_committed(event: CommittedEvent) -> None:
    """Hand a committed event to every listener, in registration order; never raises."""
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a push or dispatch failure must not undo or break a committed change
            logger.exception("job event listener %r failed", listener, extra={"job_id": event.job_id, "seq": event.seq})
