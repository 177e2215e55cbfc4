"""Deadlines of one job (CONTRACT.md): `start_timeout_s` while it waits, `max_runtime_s` while it runs.

Run by the periodic `enforce_deadlines_task` every JOBS_DEADLINES_INTERVAL_S (5 s): a job still waiting
after start_timeout_s is cancelled "expired …" (admission never sends an expired job, even between two
runs), and one processing past min(max_runtime_s, JOB_TIME_LIMIT_S) is failed "timed out …" — its stage's
heartbeat then sees the job is no longer its own and terminates the task, and the failure frees its slot.
Every action is a conditional service call under the job's row lock, so overlapping runs are harmless.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone

from ops import metrics

from . import services, states
from .admission import admit_safely
from .models import GenerationJob

logger = logging.getLogger(__name__)


def expire_waiting() -> list[str]:
    """Cancel waiting jobs past their start_timeout_s ("expired after …")."""
    now = timezone.now()
    candidates = GenerationJob.objects.filter(status=states.QUEUED, start_timeout_s__isnull=False).values_list(
        "pk", "queued_at", "start_timeout_s")
    expired = []
    for job_id, queued_at, timeout_s in candidates:
        if queued_at is None or now - queued_at < timedelta(seconds=timeout_s):
            continue
        if services.job_expire(job_id=job_id) is not None:
            expired.append(str(job_id))
            metrics.count_deadline("expired")
    return expired


def time_out_running() -> list[str]:
    """Fail processing jobs past their max_runtime_s ("timed out after …")."""
    now = timezone.now()
    candidates = GenerationJob.objects.filter(status=states.PROCESSING, max_runtime_s__isnull=False,
                                              started_at__isnull=False).values_list(
        "pk", "attempts", "started_at", "max_runtime_s")
    timed_out = []
    for job_id, attempt, started_at, limit_s in candidates:
        if now - started_at < timedelta(seconds=limit_s):
            continue
        if services.job_time_out(job_id=job_id, attempt=attempt) is not None:
            timed_out.append(str(job_id))
    return timed_out


def enforce_deadlines() -> dict[str, Any]:
    expired, timed_out = expire_waiting(), time_out_running()
    admitted = admit_safely()
    if expired or timed_out:
        logger.info("deadlines: expired %s, timed out %s", expired, timed_out)
    return {"expired": expired, "timed_out": timed_out, "admitted": [str(item.job.pk) for item in admitted]}
