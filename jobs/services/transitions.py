"""One transition under the job's row lock: the private machinery the jobs.services modules share.

`_transition` locks the job, checks the move against the state table (jobs/states.py), sets the fields that
go with the new status and records the JobEvent (jobs/records.py) that listeners publish on commit. The
`_completing`/`_failing`/`_cancelling` mutators are the fields a finishing job takes, whichever path it ends on.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable

from django.db import transaction
from django.utils import timezone

from .. import states, transition_sql
from ..exceptions import InvalidTransition
from ..models import GenerationJob, JobEvent
from ..records import lock_job, record_event, trim_stage

logger = logging.getLogger("jobs.services")


Mutate = Callable[[GenerationJob], None]


def _allowed(job: GenerationJob, target: str, *, retry: bool, rerun: bool = False) -> bool:
    """Whether the locked job may move to `target` (an explicit retry only admits failed|cancelled -> queued;
    a re-run from a stage also completed -> queued)."""
    if rerun and job.status == states.COMPLETED and target == states.QUEUED:
        return True
    if retry:
        return target in states.RETRY_TRANSITIONS.get(job.status, frozenset())
    return states.can_transition(job.status, target)


def _enter_processing(job: GenerationJob, now: Any) -> None:
    job.started_at = now
    job.heartbeat_at = now
    job.queue_position = None
    job.admitted_at = job.admitted_at or now  # started without admission (JobService): it holds a slot now


def _enter_queued(job: GenerationJob, now: Any) -> None:
    # Back to queued is always a new attempt (retry, lost worker, or a plain status update), so late
    # updates of the old attempt are refused and progress starts over without "going down".
    job.attempts += 1
    job.queued_at = now
    # The new attempt waits for admission again (jobs/admission.py): the old one's slot is free.
    job.admitted_at = job.queue_position = None
    job.dispatched_at = job.started_at = job.completed_at = job.heartbeat_at = None
    job.celery_task_id = job.worker = job.current_stage = ""
    job.progress = 0.0
    job.stage_progress = {}
    job.error_message = job.result = None


def _enter_terminal(job: GenerationJob, now: Any) -> None:
    job.completed_at = now
    job.heartbeat_at = None
    job.queue_position = None
    if job.status == states.COMPLETED:
        job.progress = 100.0


_ON_ENTER: dict[str, Callable[[GenerationJob, Any], None]] = {
    states.PROCESSING: _enter_processing,
    states.QUEUED: _enter_queued,
    **{status: _enter_terminal for status in states.TERMINAL},
}


def _enter(job: GenerationJob, target: str, mutate: Mutate | None) -> str:
    """Move the locked job to `target` with the fields that go with it (not saved); the old status."""
    previous = job.status
    job.status = target
    _ON_ENTER[target](job, timezone.now())
    if mutate is not None:
        mutate(job)
    return previous


def _apply(job: GenerationJob, target: str, *, message: str = "", mutate: Mutate | None = None) -> str:
    """Move the locked job to `target` with the fields that go with it and record the event; the old status."""
    previous = _enter(job, target, mutate)
    record_event(job, kind=JobEvent.STATUS, previous_status=previous, message=message)
    return previous


def _log_moved(job: GenerationJob, previous: str, message: str) -> None:
    logger.info("job %s: %s -> %s%s", job.pk, previous, job.status, f" ({message})" if message else "",
                extra={"job_id": str(job.pk), "status": job.status, "attempt": job.attempts})


def _stale(job: GenerationJob, attempt: int | None, target: str) -> bool:
    if attempt is None or attempt == job.attempts:
        return False
    logger.info("job %s: ignoring %s from stale attempt %s (now %s)", job.pk, target, attempt, job.attempts,
                extra={"job_id": str(job.pk)})
    return True


def _transition(
    job_id: uuid.UUID | str,
    target: str,
    *,
    strict: bool,
    retry: bool = False,
    attempt: int | None = None,
    message: str = "",
    mutate: Mutate | None = None,
    refusal: str | None = None,
    rerun: bool = False,
) -> GenerationJob | None:
    """Move a job to `target` under its row lock; None (logged) for a refused non-strict move."""
    with transaction.atomic():
        job = lock_job(job_id)
        if _stale(job, attempt, target):
            return None
        if not _allowed(job, target, retry=retry, rerun=rerun):
            if strict:
                raise InvalidTransition(job.pk, job.status, target, refusal and refusal.format(status=job.status))
            logger.info("job %s: ignoring late %s -> %s", job.pk, job.status, target, extra={"job_id": str(job.pk)})
            return None
        previous = _apply(job, target, message=message, mutate=mutate)
    _log_moved(job, previous, message)
    return job


def _worker_transition(job_id: uuid.UUID | str, target: str, *, attempt: int | None, message: str,
                       mutate: Mutate | None) -> GenerationJob | None:
    """A worker's non-strict `_transition` (started, completed): the same decision, on PostgreSQL outside a
    caller's transaction in two round trips (jobs/transition_sql.py), else `_transition` itself."""
    if not transition_sql.usable():
        return _transition(job_id, target, strict=False, attempt=attempt, message=message, mutate=mutate)
    job = transition_sql.lock(job_id)  # JobNotFound: already rolled back
    # Everything from the row lock to the COMMIT rolls back on any error, a SoftTimeLimitExceeded raised at any
    # line included: a connection left inside the transaction would hold the job's row lock for good.
    try:
        stale = _stale(job, attempt, target)
        if stale or not _allowed(job, target, retry=False):
            if not stale:
                logger.info("job %s: ignoring late %s -> %s", job.pk, job.status, target,
                            extra={"job_id": str(job.pk)})
            transition_sql.rollback()
            return None
        previous = _enter(job, target, mutate)
        hooks = transition_sql.record_and_commit(job, kind=JobEvent.STATUS, previous_status=previous, message=message)
    except BaseException:
        transition_sql.rollback()
        raise
    for hook in hooks:
        hook()
    _log_moved(job, previous, message)
    return job


def _completing(result: dict | None, stage: str | None = None) -> Mutate:
    def mutate(job: GenerationJob) -> None:
        job.result = result if result is not None else {}
        job.current_stage = trim_stage(stage) or "Completed"
        job.error_message = None

    return mutate


def _failing(text: str) -> Mutate:
    def mutate(job: GenerationJob) -> None:
        job.error_message = text

    return mutate


def _cancelling(job: GenerationJob) -> None:
    job.current_stage = "Cancelled"


def _failure_text(error_message: str | None) -> str:
    return (error_message or "failed").strip()[:2000]
