"""The two steps of every change to a job: take its row lock, and record the change as its next event.

Only jobs/services/, jobs/progress_rules.py and jobs/checkpoints.py use these; everything else changes a job through them.
"""
from __future__ import annotations

import uuid
from functools import partial
from typing import Callable

from django.db import transaction
from django.utils import timezone

from ops import metrics

from . import listeners, states
from .exceptions import JobNotFound
from .ids import parse_uuid
from .models import GenerationJob, JobEvent

STAGE_MAX_LENGTH = GenerationJob._meta.get_field("current_stage").max_length
JOB_FIELDS_SAVED = [
    "status", "progress", "current_stage", "error_message", "result", "attempts", "lost_count", "seq",
    "stage_progress", "worker", "heartbeat_at", "queued_at", "dispatched_at", "celery_task_id", "admitted_at",
    "queue_position", "rerun_from", "rerun_source",
    "started_at", "completed_at", "updated_at",
]


def clamp_progress(value: float) -> float:
    """Clamp to 0..100 (NaN counts as 0) and round to 0.1 so tiny float noise is not an event."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    if number != number:  # NaN
        return 0.0
    return round(min(100.0, max(0.0, number)), 1)


def trim_stage(stage: str | None) -> str:
    """A stage text as stored: stripped and cut to the column's length."""
    return (stage or "").strip()[:STAGE_MAX_LENGTH]


def job_uuid(job_id: uuid.UUID | str) -> uuid.UUID:
    """The job's id as a UUID; JobNotFound when it is not one."""
    parsed = parse_uuid(job_id)
    if parsed is None:
        raise JobNotFound(job_id)
    return parsed


def lock_job(job_id: uuid.UUID | str) -> GenerationJob:
    """The job with its row locked until the surrounding transaction ends; JobNotFound if there is none."""
    try:
        return GenerationJob.objects.select_for_update().get(pk=job_uuid(job_id))
    except GenerationJob.DoesNotExist:
        raise JobNotFound(job_id) from None


def committed_event(job: GenerationJob, *, kind: str, previous_status: str | None,
                    message: str = "", data: dict | None = None) -> listeners.CommittedEvent:
    """What the listeners receive about this change once it has committed."""
    return listeners.CommittedEvent(
        job_id=str(job.pk), project_id=str(job.project_id), job_type=job.job_type, seq=job.seq, kind=kind,
        status=job.status, previous_status=previous_status, progress=job.progress,
        current_stage=job.current_stage, error_message=job.error_message,
        result=job.result if job.status == states.COMPLETED else None, attempt=job.attempts, message=message,
        external=job.external, data=data,
    )


def next_event(job: GenerationJob, *, kind: str, previous_status: str | None, message: str = "",
               data: dict | None = None) -> tuple[JobEvent, list[Callable[[], None]]]:
    """The locked job's next event (seq and updated_at moved on, nothing saved yet) and the hooks to run once it
    has committed (the listeners' hand-off, the metrics)."""
    job.seq += 1
    job.updated_at = timezone.now()
    event = JobEvent(
        job=job, seq=job.seq, kind=kind, status=job.status, progress=job.progress,
        stage=job.current_stage, message=message[:2000], attempt=job.attempts, data=data,
    )
    committed = committed_event(job, kind=kind, previous_status=previous_status, message=message, data=data)
    return event, [partial(listeners.event_committed, committed),
                   metrics.job_event_hook(job, kind=kind, previous_status=previous_status)]


def record_event(job: GenerationJob, *, kind: str, previous_status: str | None, message: str = "",
                 data: dict | None = None) -> JobEvent:
    """Save the locked job with the next seq, write its JobEvent, and schedule the hand-off on commit.

    `data`: an artifact event's message fields (realtime/events.py artifact_message)."""
    event, hooks = next_event(job, kind=kind, previous_status=previous_status, message=message, data=data)
    job.save(update_fields=JOB_FIELDS_SAVED)
    event.save(force_insert=True)
    for hook in hooks:
        transaction.on_commit(hook)
    return event
