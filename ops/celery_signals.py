"""Celery signal hooks: readiness file, kept database connections, log context and one log line per event.

`connect()` is called from OpsConfig.ready(); connecting twice keeps one receiver per hook (dispatch_uid).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery.signals import (
    task_failure, task_postrun, task_prerun, task_retry, task_success, worker_process_init,
    worker_process_shutdown, worker_ready, worker_shutdown,
)

from .logging import bind_job_context, job_id_of_call, unbind_job_context, unbind_job_context_anywhere


def connect() -> None:
    """Connect every hook of this module to its Celery signal."""
    hooks = (
        (worker_ready, _write_ready_file), (worker_shutdown, _remove_ready_file),
        (worker_process_init, _keep_db_connections), (task_prerun, _check_db_connections),
        (worker_process_shutdown, _mark_metrics_dead),
        (task_prerun, _on_prerun), (task_postrun, _on_postrun), (task_success, _on_success),
        (task_failure, _on_failure), (task_retry, _on_retry),
        # After the lifecycle lines, as before: the context spans the task body only.
        (task_prerun, _bind_log_context), (task_postrun, _unbind_log_context),
    )
    for signal, hook in hooks:
        signal.connect(hook, weak=False, dispatch_uid=f"ops.celery_signals.{hook.__name__}")


# --- Readiness probe ----------------------------------------------------------------------------------

def _write_ready_file(**_: object) -> None:
    """Touch $WORKER_READY_FILE once the worker consumes (a readiness probe for supervisors and tests)."""
    ready_file = os.environ.get("WORKER_READY_FILE")
    if ready_file:
        with open(ready_file, "w") as handle:
            handle.write(str(os.getpid()))


def _remove_ready_file(**_: object) -> None:
    ready_file = os.environ.get("WORKER_READY_FILE")
    if ready_file:
        try:
            os.unlink(ready_file)
        except FileNotFoundError:
            pass


def _mark_metrics_dead(pid: int | None = None, **_: object) -> None:
    """A pool child exiting (max-tasks-per-child, scaling down) leaves no live-gauge file to be summed."""
    from . import metrics

    metrics.mark_process_dead(pid or os.getpid())


# --- Database connections of pool children ------------------------------------------------------------

_pool_child_keeps_connections = False


def _keep_db_connections(**_: object) -> None:
    """In a pool child, let connections live across tasks (settings: CELERY_DB_REUSE_MAX)."""
    from django.conf import settings
    from django.db import connections

    global _pool_child_keeps_connections
    if not getattr(settings, "CELERY_DB_REUSE_MAX", None):
        return
    _pool_child_keeps_connections = True
    for connection in connections.all():
        connection.settings_dict["CONN_MAX_AGE"] = settings.WORKER_DB_CONN_MAX_AGE
        connection.settings_dict["CONN_HEALTH_CHECKS"] = True


def _check_db_connections(**_: object) -> None:
    """What Django does at each request start: drop a connection that failed or is too old, and arm the
    health check (one `SELECT 1` before the task's first query) for one that is kept. Only in pool
    children that keep connections: elsewhere (eager tasks inside a test's transaction) it would close the
    caller's connection."""
    if not _pool_child_keeps_connections:
        return
    from django.db import close_old_connections, connections

    close_old_connections()
    for connection in connections.all(initialized_only=True):
        if _left_in_a_transaction(connection):
            connection.close()  # a task ended between our own BEGIN and its COMMIT: never reuse that session


def _left_in_a_transaction(connection) -> bool:
    """A PostgreSQL session inside a transaction Django does not know of (jobs/transition_sql.py and
    jobs/admission_sql.py open theirs with SQL and end it on every error they can catch; a task killed at the
    wrong line is the rest): it would hold its row locks for good."""
    if connection.vendor != "postgresql" or connection.connection is None or connection.in_atomic_block:
        return False
    from psycopg.pq import TransactionStatus

    return connection.connection.info.transaction_status != TransactionStatus.IDLE


# --- Log context: job_id / task_id on every line logged inside a task (ops/logging.py) ----------------

_bound: dict[str, tuple[Any, Any]] = {}


def _bind_log_context(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None,
                      **_: Any) -> None:
    try:
        _bound[str(task_id)] = bind_job_context(job_id=job_id_of_call(task, args, kwargs), task_id=task_id)
    except Exception:  # logging context must never stop a task
        pass


def _unbind_log_context(task_id: str | None = None, **_: Any) -> None:
    tokens = _bound.pop(str(task_id), None)
    if tokens is not None:
        try:
            unbind_job_context(tokens)
        except ValueError:  # reset from another context (a thread pool): clear instead
            unbind_job_context_anywhere()


# --- One structured log line per task lifecycle signal ------------------------------------------------
_task_log = logging.getLogger("jobs.celery")
_started: dict[str, float] = {}


def _task_fields(task: object, task_id: str | None, args: object = None) -> dict[str, object]:
    """task id, job id, queue, job attempt and retry number of a task, for the log line's `extra`."""
    request = getattr(task, "request", None)
    args = args if args is not None else getattr(request, "args", None)
    job_id = attempt = None
    if getattr(task, "name", "").startswith("jobs.tasks.") and isinstance(args, (list, tuple)) and args:
        job_id = args[0]
        attempt = args[1] if len(args) > 1 else None
    delivery = getattr(request, "delivery_info", None) or {}
    started = _started.get(task_id or "")
    return {
        "task": getattr(task, "name", "?"),
        "task_id": task_id,
        "job_id": job_id,
        "queue": delivery.get("routing_key") or delivery.get("queue"),
        "attempt": attempt,
        "retries": getattr(request, "retries", 0),
        "duration_s": round(time.monotonic() - started, 3) if started else None,
    }


def _log(signal_name: str, fields: dict[str, object], level: int = logging.INFO, **more: object) -> None:
    fields = {"signal": signal_name, **fields, **more}
    _task_log.log(level, " ".join(f"{k}={v}" for k, v in fields.items()), extra=fields)


def _on_prerun(task_id: str | None = None, task: object = None, args: object = None, **_: object) -> None:
    _started[task_id or ""] = time.monotonic()
    _log("task_prerun", _task_fields(task, task_id, args))


def _on_postrun(task_id: str | None = None, task: object = None, args: object = None, state: str | None = None,
                **_: object) -> None:
    _log("task_postrun", _task_fields(task, task_id, args), state=state)
    _started.pop(task_id or "", None)


def _on_success(sender: object = None, **_: object) -> None:
    request = getattr(sender, "request", None)
    _log("task_success", _task_fields(sender, getattr(request, "id", None)))


def _on_failure(sender: object = None, task_id: str | None = None, exception: BaseException | None = None,
                args: object = None, **_: object) -> None:
    _log("task_failure", _task_fields(sender, task_id, args), level=logging.ERROR,
         error=f"{type(exception).__name__}: {exception}" if exception else None)


def _on_retry(sender: object = None, request: object = None, reason: object = None, **_: object) -> None:
    task_id = getattr(request, "id", None)
    _log("task_retry", _task_fields(sender, task_id, getattr(request, "args", None)), level=logging.WARNING,
         reason=reason)
