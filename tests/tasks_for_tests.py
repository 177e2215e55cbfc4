"""Celery tasks that exist only for end-to-end tests (a worker loads them with `-I tests.tasks_for_tests`).

`report_progress_steps_task` plays a stage that reports progress in a tight loop, through the same
ProgressCoalescer and job service the real stages use (jobs.worker.JobStageContext), then completes.
"""
from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from jobs import services
from jobs.conf import job_settings
from jobs.progress import ProgressCoalescer

TASK_NAME = "tests.tasks_for_tests.report_progress_steps_task"


@shared_task(name=TASK_NAME)
def report_progress_steps_task(job_id: str, steps: int, pause_s: float, last_progress: float) -> dict[str, Any]:
    """Start the job, report `steps` rising values up to `last_progress` (pausing `pause_s` each), complete it."""
    job = services.job_start(job_id=job_id, worker="tests.tasks_for_tests")
    if job is None:
        return {"outcome": "not started"}

    def sink(progress: float, stage: str) -> None:
        services.job_report_progress(job_id=job_id, progress=progress, stage=stage, attempt=job.attempts)

    coalescer = ProgressCoalescer(sink, per_second=job_settings().PROGRESS_EVENTS_PER_S)
    started = time.monotonic()
    for step in range(1, steps + 1):
        coalescer.report(last_progress * step / steps, f"Step {step} of {steps}")
        coalescer.flush_if_due()
        if pause_s:
            time.sleep(pause_s)
    coalescer.flush()
    services.job_complete(job_id=job_id, result={"artifacts": [], "steps": steps}, attempt=job.attempts)
    return {"outcome": "completed", "reports": steps, "sent": coalescer.sent,
            "duration_s": round(time.monotonic() - started, 3)}


DB_PID_TASK_NAME = "tests.tasks_for_tests.db_backend_pid_task"


@shared_task(name=DB_PID_TASK_NAME)
def db_backend_pid_task() -> int:
    """The PostgreSQL backend pid serving this task's queries (shows whether a connection was kept)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]
