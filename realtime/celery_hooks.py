"""Celery signal hooks of the realtime app: a worker sends what a task pushed before its next task or exit."""
from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, worker_process_shutdown

from . import publish


def connect() -> None:
    """Called from RealtimeConfig.ready; connecting twice keeps one receiver per hook (dispatch_uid)."""
    task_postrun.connect(_flush_after_task, weak=False, dispatch_uid="realtime.celery_hooks.flush_after_task")
    worker_process_shutdown.connect(_flush_after_task, weak=False, dispatch_uid="realtime.celery_hooks.flush_at_shutdown")


def _flush_after_task(**_: Any) -> None:
    publish.flush()
