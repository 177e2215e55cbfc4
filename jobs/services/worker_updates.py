"""What the worker side reports about the job it runs: dispatched, started, progress, heartbeats, the
outcome, and JobService's all-in-one `job_advance`. A late or replayed report is a logged no-op."""
from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from .. import progress_rules, states
from ..exceptions import InvalidJobInput
from ..locations import key_url
from ..models import GenerationJob, JobEvent
from ..pipeline.artifacts import Artifact
from ..records import lock_job, record_event
from .creation import job_get
from .transitions import (Mutate, _apply, _cancelling, _completing, _failing, _failure_text, _log_moved,
                          _transition, _worker_transition)

logger = logging.getLogger("jobs.services")


def job_update_status(
    *, job_id: uuid.UUID | str, status: str, message: str = "", strict: bool = True, attempt: int | None = None
) -> GenerationJob | None:
    """A plain transition by status name; strict calls raise InvalidTransition when it is not allowed."""
    if status not in states.STATUSES:
        raise InvalidJobInput("status", f"unknown status {status!r}; allowed: {', '.join(states.STATUSES)}")
    return _transition(job_id, status, strict=strict, attempt=attempt, message=message)


def job_start(
    *, job_id: uuid.UUID | str, worker: str = "", task_id: str | None = None, attempt: int | None = None
) -> GenerationJob | None:
    """queued -> processing for the worker that picked the job up; None if it was cancelled or finished."""

    def mutate(job: GenerationJob) -> None:
        job.worker = worker[:255]
        if task_id:
            job.celery_task_id = task_id[:255]

    return _worker_transition(job_id, states.PROCESSING, attempt=attempt, message="Started", mutate=mutate)


def job_report_progress(
    *,
    job_id: uuid.UUID | str,
    progress: float,
    stage: str | None = None,
    part: str | None = None,
    attempt: int | None = None,
) -> bool:
    """Record progress of a processing job; False (a no-op) if nothing moved or the job is not running.

    With `part`, `progress` is that stage's own 0-100 and the job's progress is the stage-weighted sum of
    all parts, so stages running in parallel combine into one rising number (jobs/progress_rules.py).
    """
    return progress_rules.report_progress(job_id, progress=progress, stage=stage, part=part, attempt=attempt)


def job_complete(
    *, job_id: uuid.UUID | str, result: dict | None = None, attempt: int | None = None
) -> GenerationJob | None:
    """processing -> completed with its result and progress 100; a replay is a no-op."""
    return _worker_transition(job_id, states.COMPLETED, attempt=attempt, message="Completed",
                              mutate=_completing(result))


def job_fail(
    *, job_id: uuid.UUID | str, error_message: str, attempt: int | None = None
) -> GenerationJob | None:
    """queued|processing -> failed with a user-facing message; progress reached is kept."""
    text = _failure_text(error_message)
    return _transition(job_id, states.FAILED, strict=False, attempt=attempt, message=text, mutate=_failing(text))


# What a status reached through job_advance records: its event message and the fields that go with it.
_ADVANCE_MESSAGES = {states.PROCESSING: "Started", states.QUEUED: "Requeued", states.COMPLETED: "Completed",
                     states.CANCELLED: "Cancelled"}


def _finishing(target: str, text: str, *, result: dict | None, stage: str | None) -> Mutate | None:
    """The fields a job reaching a terminal `target` takes (None for the other statuses)."""
    if target == states.COMPLETED:
        return _completing(result, stage)
    if target == states.FAILED:
        return _failing(text)
    return _cancelling if target == states.CANCELLED else None


def _advance_path(job: GenerationJob, target: str) -> list[str] | None:
    """The moves from the job's status to `target`: direct, or through processing for a job still queued
    (a task that never "starts" its job). None when the state table allows neither."""
    if states.can_transition(job.status, target):
        return [target]
    if states.can_transition(job.status, states.PROCESSING) and states.can_transition(states.PROCESSING, target):
        return [states.PROCESSING, target]
    return None


def job_advance(
    *,
    job_id: uuid.UUID | str,
    status: str,
    progress: float | None = None,
    stage: str | None = None,
    result: dict | None = None,
    error_message: str | None = None,
) -> GenerationJob | None:
    """Move a job to `status` as a task that reports its own job does (JobService): a queued job passes
    through processing first, processing -> processing records progress only, and what the state table
    refuses (a finished job) is a logged no-op (None). One transaction under the row lock."""
    if status not in states.STATUSES:
        raise InvalidJobInput("status", f"unknown status {status!r}; allowed: {', '.join(states.STATUSES)}")
    with transaction.atomic():
        job = lock_job(job_id)
        path = [] if status == job.status == states.PROCESSING else _advance_path(job, status)
        if path is None:
            logger.info("job %s: ignoring late %s -> %s", job.pk, job.status, status, extra={"job_id": str(job.pk)})
            return None
        for target in path:
            text = _failure_text(error_message) if target == states.FAILED else _ADVANCE_MESSAGES[target]
            mutate = _finishing(target, text, result=result, stage=stage) if target == path[-1] else None
            _log_moved(job, _apply(job, target, message=text, mutate=mutate), text)
        if job.status == states.PROCESSING and (progress is not None or stage is not None):
            progress_rules.report_progress(job.pk, progress=job.progress if progress is None else progress,
                                           stage=stage, part=None, attempt=job.attempts)
    return job_get(job_id=job.pk)


def job_record_reused(*, job_id: uuid.UUID | str, attempt: int, stage: str, source: int,
                      artifacts: list[Artifact]) -> bool:
    """Record a stage this attempt took from attempt `source` instead of running it (jobs/rerun.py): one
    `artifact` event per file, its message saying `reused`; False, nothing recorded, once the attempt is over."""
    with transaction.atomic():
        job = lock_job(job_id)
        if job.attempts != attempt or job.status != states.PROCESSING:
            return False
        for artifact in artifacts:
            scene = artifact.meta.get("scene")
            data = {"kind": artifact.kind, "name": artifact.name, "url": key_url(job.pk, artifact.key),
                    "scene": scene if isinstance(scene, int) else None, "reused": True}
            record_event(job, kind=JobEvent.ARTIFACT, previous_status=job.status, data=data,
                         message=f"The {stage} stage's {artifact.name} reused from attempt {source}")
    return True


def job_heartbeat(*, job_id: uuid.UUID | str, worker: str = "", attempt: int | None = None) -> bool:
    """Refresh a processing job's lease; False if the job is no longer ours to run (conditional update)."""
    query = GenerationJob.objects.filter(pk=job_id, status=states.PROCESSING)
    if attempt is not None:
        query = query.filter(attempts=attempt)
    updated = query.update(heartbeat_at=timezone.now())
    return updated == 1


def job_mark_dispatched(*, job_id: uuid.UUID | str, task_id: str) -> bool:
    """Remember the Celery task id of a queued job's dispatch (no event: the status did not change)."""
    now = timezone.now()
    updated = GenerationJob.objects.filter(pk=job_id, status=states.QUEUED).update(
        celery_task_id=task_id[:255], dispatched_at=now, updated_at=now
    )
    return updated == 1
