"""What the reaper, the deadline enforcer and retention decide about a job: a lost worker, a time-out, an
expired wait, artifacts deleted. Each decision is taken under the row lock, so two observers count it once."""
from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from ops import metrics

from .. import states
from ..conf import job_settings
from ..exceptions import JobNotFound
from ..models import GenerationJob
from ..records import lock_job
from .transitions import _apply, _cancelling, _failing, _log_moved, _stale

logger = logging.getLogger("jobs.services")


def job_record_lost_worker(*, job_id: uuid.UUID | str, attempt: int, reason: str) -> str | None:
    """Count a lost worker for a processing attempt: requeue it as a new attempt, or fail it after
    JOBS["MAX_ATTEMPTS"] losses (an external job at once: only its caller could run it again). Returns
    "requeued", "failed", or None when the attempt had moved on.

    Decided under the row lock, so two observers of one loss (the reaper, a redelivered task) count it once.
    """
    max_lost = job_settings().MAX_ATTEMPTS
    with transaction.atomic():
        job = lock_job(job_id)
        if job.attempts != attempt or job.status != states.PROCESSING:
            return None
        lost = job.lost_count + 1
        gives_up = lost >= max_lost or job.external
        outcome, target = ("failed", states.FAILED) if gives_up else ("requeued", states.QUEUED)
        message = f"worker lost {lost} times" if outcome == "failed" else (
            f"{reason}; worker lost {lost} of {max_lost} times")
        if job.external:
            message = f"{reason}; the task that created this job did not finish it"

        def mutate(locked: GenerationJob) -> None:
            locked.lost_count = lost
            if outcome == "failed":
                locked.error_message = message

        previous = _apply(job, target, message=message, mutate=mutate)
        transaction.on_commit(lambda: metrics.count_reaper_action(outcome))
    _log_moved(job, previous, message)
    logger.warning("job %s: %s (%s, lost %s times)", job.pk, outcome, reason, lost,
                   extra={"job_id": str(job.pk), "attempt": attempt, "lost_count": lost})
    return outcome


def job_time_out(*, job_id: uuid.UUID | str, attempt: int | None = None) -> GenerationJob | None:
    """Fail a processing job that has run longer than its max_runtime_s or JOBS["JOB_TIME_LIMIT_S"] (all its
    stages together), whichever is less; None when it has not, or is no longer processing. Its running task
    sees the failure and stops."""
    with transaction.atomic():
        job = lock_job(job_id)
        now = timezone.now()
        limit_s, text = runtime_limit(job)
        if (job.status != states.PROCESSING or _stale(job, attempt, states.FAILED) or job.started_at is None
                or (now - job.started_at).total_seconds() < limit_s):
            return None
        previous = _apply(job, states.FAILED, message=text, mutate=_failing(text))
        transaction.on_commit(lambda: metrics.count_deadline("timed_out"))
    _log_moved(job, previous, text)
    return job


def runtime_limit(job: GenerationJob) -> tuple[float, str]:
    """The seconds a job may run (max_runtime_s, never more than JOB_TIME_LIMIT_S) and the failure text."""
    whole = job_settings().JOB_TIME_LIMIT_S
    if job.max_runtime_s is not None and job.max_runtime_s < whole:
        return float(job.max_runtime_s), f"timed out after {job.max_runtime_s} s (the job's max_runtime_s)"
    return whole, f"timed out after {whole:g} s (the whole job's time limit, JOB_TIME_LIMIT_S)"


def job_expire(*, job_id: uuid.UUID | str) -> GenerationJob | None:
    """Cancel a job still waiting after its start_timeout_s ("expired …"); None when it is not (any more)."""
    with transaction.atomic():
        job = lock_job(job_id)
        if job.status != states.QUEUED or job.start_timeout_s is None or job.queued_at is None:
            return None
        waited = (timezone.now() - job.queued_at).total_seconds()
        if waited < job.start_timeout_s:
            return None
        text = f"expired: still queued after {job.start_timeout_s} s (start_timeout_s)"

        def mutate(locked: GenerationJob) -> None:
            locked.error_message = text
            _cancelling(locked)

        previous = _apply(job, states.CANCELLED, message=text, mutate=mutate)
    _log_moved(job, previous, text)
    return job


def job_mark_expired(*, job_id: uuid.UUID | str, attempt: int) -> bool:
    """Record that a finished job's artifacts were deleted by retention (jobs/retention.py): its result keeps
    its other fields, lists no artifact and says `expired`. No event: the status did not change. False when
    the job was retried (a new attempt) or deleted meanwhile."""
    with transaction.atomic():
        try:
            job = lock_job(job_id)
        except JobNotFound:
            return False
        if job.attempts != attempt or job.status not in states.TERMINAL:
            return False
        result = dict(job.result) if isinstance(job.result, dict) else {}
        result.update(artifacts=[], expired=True, expired_at=timezone.now().isoformat())
        result.setdefault("expires_at", None)
        job.result = result
        job.save(update_fields=["result", "updated_at"])
    return True
