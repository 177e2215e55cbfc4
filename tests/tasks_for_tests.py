"""Celery tasks that exist only for end-to-end tests (a worker loads them with `-I tests.tasks_for_tests`).

`report_progress_steps_task` plays a stage that reports progress in a tight loop, through the same
ProgressCoalescer and job service the real stages use (jobs.running.JobStageContext), then completes.
The `seed_*` tasks are written on `config.celery.BaseTask` the way the platform's design documents write
tasks, outside the pipeline (tests/e2e/test_seed_tasks.py).
"""
from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from config.celery import BaseTask, app
from jobs import services
from jobs.services import JobService
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


POOL_PID_TASK_NAME = "tests.tasks_for_tests.pool_child_pid_task"


@shared_task(name=POOL_PID_TASK_NAME)
def pool_child_pid_task() -> int:
    """The pid of the pool child running this task (shows which child ran it)."""
    import os

    return os.getpid()


POOL_CHILD_STATE_TASK_NAME = "tests.tasks_for_tests.pool_child_state_task"


@shared_task(name=POOL_CHILD_STATE_TASK_NAME)
def pool_child_state_task() -> dict[str, Any]:
    """What this pool child inherited from the worker's main process (patches/celery_pool.py): how many objects
    it has frozen, and how often it polls for its last result's count before recycling."""
    import gc

    from billiard import pool

    return {"frozen": gc.get_freeze_count(), "consumed_poll_s": pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_INTERVAL,
            "consumed_patience_s": pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_INTERVAL
            * pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT}


SEED_TASK_NAME = "tests.tasks_for_tests.seed_style_task"
SEED_SLOW_TASK_NAME = "tests.tasks_for_tests.seed_slow_task"
SEED_FLAKY_TASK_NAME = "tests.tasks_for_tests.seed_flaky_task"


@app.task(base=BaseTask, bind=True, name=SEED_TASK_NAME)
def seed_style_task(self: BaseTask, job_id: str, pause_s: float = 0.05) -> dict[str, Any]:
    """The documents' way: progress 10 … 90 through JobService, then mark the job completed."""
    for value in range(10, 100, 10):
        JobService.update_job_progress(job_id, value, current_stage=f"Step {value // 10} of 9")
        self.check_cancelled()
        time.sleep(pause_s)
    JobService.mark_job_completed(job_id, result={"artifacts": [], "written_by": "seed_style_task"})
    return {"outcome": "completed"}


@app.task(base=BaseTask, bind=True, name=SEED_SLOW_TASK_NAME)
def seed_slow_task(self: BaseTask, job_id: str, seconds: float) -> dict[str, Any]:
    """Reports and checks for cancellation for `seconds`, then returns (BaseTask completes the job)."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        self.report_progress(100.0 * elapsed / seconds, "Working slowly")
        self.check_cancelled()
        time.sleep(0.05)
    return {"artifacts": [], "seconds": seconds}


@app.task(base=BaseTask, bind=True, name=SEED_FLAKY_TASK_NAME)
def seed_flaky_task(self: BaseTask, job_id: str, failures: int) -> dict[str, Any]:
    """Raises a transient error on its first `failures` runs, then returns (BaseTask completes the job)."""
    self.report_progress(10.0 * (self.request.retries + 1), f"Try {self.request.retries + 1}")
    if self.request.retries < failures:
        raise ConnectionError("the backend is not reachable")
    return {"artifacts": [], "tries": self.request.retries + 1}
