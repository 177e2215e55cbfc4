"""Logging helpers: JSON lines (LOG_FORMAT=json) and the job/task context added to every record.

`JobContextFilter` (on the console handler, see settings.LOGGING) stamps `job_id` and `task_id` onto each
record logged while a job is being handled: inside `job_context(...)`, or inside any Celery task whose
arguments name a `job_id` (set by the task_prerun/task_postrun hooks in ops/celery_signals.py). Explicit
`extra={"job_id": …}` on a call wins.
"""
from __future__ import annotations

import inspect
import json
import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_job_id: ContextVar[str | None] = ContextVar("log_job_id", default=None)
_task_id: ContextVar[str | None] = ContextVar("log_task_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class JobContextFilter(logging.Filter):
    """Adds the current job_id / task_id (when there is one) to records that do not carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id, task_id = _job_id.get(), _task_id.get()
        if job_id is not None and getattr(record, "job_id", None) is None:
            record.job_id = job_id
        if task_id is not None and getattr(record, "task_id", None) is None:
            record.task_id = task_id
        return True


@contextmanager
def job_context(*, job_id: object = None, task_id: object = None) -> Iterator[None]:
    """Within the block, every log line carries this job_id / task_id."""
    tokens = bind_job_context(job_id=job_id, task_id=task_id)
    try:
        yield
    finally:
        unbind_job_context(tokens)


def bind_job_context(*, job_id: object = None, task_id: object = None) -> tuple[Any, Any]:
    return (_job_id.set(str(job_id)) if job_id is not None else None,
            _task_id.set(str(task_id)) if task_id is not None else None)


def unbind_job_context(tokens: tuple[Any, Any]) -> None:
    for var, token in zip((_job_id, _task_id), tokens):
        if token is not None:
            var.reset(token)


def unbind_job_context_anywhere() -> None:
    """Clear the context when its tokens belong to another context (a task ended on another thread)."""
    _job_id.set(None)
    _task_id.set(None)


def job_id_of_call(task: Any, args: Any, kwargs: Any) -> object:
    """The `job_id` argument of a task call, by parameter name (None when the task takes none)."""
    if kwargs and "job_id" in kwargs:
        return kwargs["job_id"]
    try:
        return inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {})).arguments.get("job_id")
    except (TypeError, ValueError, AttributeError):
        return None
