"""The job service: the only code that changes a GenerationJob.

Every change runs in a transaction holding the job's row lock (SELECT … FOR UPDATE on PostgreSQL; SQLite
serialises writers with BEGIN IMMEDIATE), records a JobEvent with the next `seq`, and hands the committed
event to jobs.listeners via `transaction.on_commit` (the lock and the event: jobs/records.py; the progress
rules: jobs/progress_rules.py). Worker-side calls (start, progress, complete, fail, a lost worker, a time-out,
JobService's job_advance) treat a late or replayed update as a logged no-op; caller-side actions (cancel,
retry, a strict status update) raise InvalidTransition so the API can answer 409.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from functools import partial
from typing import Any, Callable

from django.db import transaction
from django.utils import timezone

from ops import metrics

from . import progress_rules, states
from .conf import job_settings
from .exceptions import InvalidJobInput, InvalidTransition, JobNotFound
from .ids import parse_uuid
from .locations import job_media_dir
from .models import GenerationJob, JobEvent
from .records import lock_job, record_event, trim_stage

logger = logging.getLogger(__name__)

Mutate = Callable[[GenerationJob], None]


# --- internals: one transition under the row lock ------------------------------------------------------

def _allowed(job: GenerationJob, target: str, *, retry: bool) -> bool:
    """Whether the locked job may move to `target` (an explicit retry only admits failed|cancelled -> queued)."""
    if retry:
        return target in states.RETRY_TRANSITIONS.get(job.status, frozenset())
    return states.can_transition(job.status, target)


def _enter_processing(job: GenerationJob, now: Any) -> None:
    job.started_at = now
    job.heartbeat_at = now


def _enter_queued(job: GenerationJob, now: Any) -> None:
    # Back to queued is always a new attempt (retry, lost worker, or a plain status update), so late
    # updates of the old attempt are refused and progress starts over without "going down".
    job.attempts += 1
    job.queued_at = now
    job.dispatched_at = job.started_at = job.completed_at = job.heartbeat_at = None
    job.celery_task_id = job.worker = job.current_stage = ""
    job.progress = 0.0
    job.stage_progress = {}
    job.error_message = job.result = None


def _enter_terminal(job: GenerationJob, now: Any) -> None:
    job.completed_at = now
    job.heartbeat_at = None
    if job.status == states.COMPLETED:
        job.progress = 100.0


_ON_ENTER: dict[str, Callable[[GenerationJob, Any], None]] = {
    states.PROCESSING: _enter_processing,
    states.QUEUED: _enter_queued,
    **{status: _enter_terminal for status in states.TERMINAL},
}


def _apply(job: GenerationJob, target: str, *, message: str = "", mutate: Mutate | None = None) -> str:
    """Move the locked job to `target` with the fields that go with it and record the event; the old status."""
    previous = job.status
    job.status = target
    _ON_ENTER[target](job, timezone.now())
    if mutate is not None:
        mutate(job)
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
) -> GenerationJob | None:
    """Move a job to `target` under its row lock; None (logged) for a refused non-strict move."""
    with transaction.atomic():
        job = lock_job(job_id)
        if _stale(job, attempt, target):
            return None
        if not _allowed(job, target, retry=retry):
            if strict:
                raise InvalidTransition(job.pk, job.status, target, refusal and refusal.format(status=job.status))
            logger.info("job %s: ignoring late %s -> %s", job.pk, job.status, target, extra={"job_id": str(job.pk)})
            return None
        previous = _apply(job, target, message=message, mutate=mutate)
    _log_moved(job, previous, message)
    return job


# --- public operations --------------------------------------------------------------------------------

def job_create(
    *, project: Any, job_type: str, params: dict | None = None, webhook_url: str | None = None,
    webhook_events_filter: list[str] | None = None, external_task_id: str = "",
) -> GenerationJob:
    """Validate and create a queued job; its plan is dispatched once the transaction commits, unless
    `external_task_id` names the caller's own task that does the work (the job is then `external`).

    `webhook_url` must already be checked (webhooks.guard); the webhooks app reads both fields."""
    from .validation import validate_job_input

    clean_params = validate_job_input(job_type=job_type, params=params, script=getattr(project, "script", None),
                                      project=project)
    with transaction.atomic():
        now = timezone.now()
        job = GenerationJob.objects.create(
            project=project, job_type=job_type, status=states.QUEUED, params=clean_params, queued_at=now,
            webhook_url=webhook_url or None, webhook_events_filter=list(webhook_events_filter or ["completed"]),
            external=bool(external_task_id), celery_task_id=external_task_id[:255],
            dispatched_at=now if external_task_id else None,
        )
        job = lock_job(job.pk)
        record_event(job, kind=JobEvent.STATUS, previous_status=None, message="Job created")
    logger.info("job %s: created (%s) for project %s", job.pk, job_type, project.pk,
                extra={"job_id": str(job.pk), "project_id": str(project.pk)})
    return job


def job_get(*, job_id: uuid.UUID | str) -> GenerationJob:
    """A job by id (no owner check; selectors.job_get_for_user scopes by owner)."""
    job = GenerationJob.objects.select_related("project").filter(pk=parse_uuid(job_id)).first()
    if job is None:
        raise JobNotFound(job_id)
    return job


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

    return _transition(job_id, states.PROCESSING, strict=False, attempt=attempt, message="Started", mutate=mutate)


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


def job_complete(
    *, job_id: uuid.UUID | str, result: dict | None = None, attempt: int | None = None
) -> GenerationJob | None:
    """processing -> completed with its result and progress 100; a replay is a no-op."""
    return _transition(job_id, states.COMPLETED, strict=False, attempt=attempt, message="Completed",
                       mutate=_completing(result))


def job_fail(
    *, job_id: uuid.UUID | str, error_message: str, attempt: int | None = None
) -> GenerationJob | None:
    """queued|processing -> failed with a user-facing message; progress reached is kept."""
    text = _failure_text(error_message)
    return _transition(job_id, states.FAILED, strict=False, attempt=attempt, message=text, mutate=_failing(text))


def job_cancel(*, job_id: uuid.UUID | str, reason: str = "Cancelled by user") -> GenerationJob:
    """Cancel an unfinished job (InvalidTransition if it already finished); the task is stopped on commit."""
    job = _transition(job_id, states.CANCELLED, strict=True, message=reason, mutate=_cancelling)
    assert job is not None
    return job


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


EXTERNAL_RETRY_REFUSAL = ("job is {status} and its work is done by the task that created it (celery_task_id), "
                          "which the platform cannot send again; create a new job from that task instead")


def job_retry(*, job_id: uuid.UUID | str) -> GenerationJob:
    """A failed or cancelled job goes back to queued as a new attempt (InvalidTransition otherwise, and
    for an external job: nothing would run the new attempt)."""
    job = job_get(job_id=job_id)
    if job.external:  # never changes after create, so reading it outside the lock is safe
        raise InvalidTransition(job.pk, job.status, states.QUEUED, EXTERNAL_RETRY_REFUSAL.format(status=job.status))

    def mutate(job: GenerationJob) -> None:
        job.lost_count = 0  # the new attempt (counted by _transition) starts with a clean slate

    job = _transition(job_id, states.QUEUED, strict=True, retry=True, message="Retry requested", mutate=mutate,
                      refusal="job is {status}; only failed or cancelled jobs can be retried")
    assert job is not None
    return job


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
    """Fail a processing job that has run longer than JOBS["JOB_TIME_LIMIT_S"] (all its stages together);
    None when it has not, or is no longer processing. Its running task sees the failure and stops."""
    limit_s = job_settings().JOB_TIME_LIMIT_S
    with transaction.atomic():
        job = lock_job(job_id)
        now = timezone.now()
        if (job.status != states.PROCESSING or _stale(job, attempt, states.FAILED) or job.started_at is None
                or (now - job.started_at).total_seconds() < limit_s):
            return None
        text = f"timed out after {limit_s:g} s (the whole job's time limit, JOB_TIME_LIMIT_S)"
        previous = _apply(job, states.FAILED, message=text, mutate=_failing(text))
    _log_moved(job, previous, text)
    return job


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


def jobs_cancel_unfinished(*, project_id: uuid.UUID | str, reason: str = "Project deleted") -> int:
    """Cancel every unfinished job of a project; returns how many were cancelled."""
    count = 0
    for job_id in GenerationJob.objects.filter(project_id=project_id, status__in=states.UNFINISHED).values_list("pk", flat=True):
        try:
            job_cancel(job_id=job_id, reason=reason)
            count += 1
        except InvalidTransition:  # finished meanwhile
            pass
    return count


def job_delete(*, job_id: uuid.UUID | str) -> None:
    """Cancel the job if it is unfinished, delete it and its events, then (on commit) remove its files."""
    try:
        job_cancel(job_id=job_id, reason="Job deleted")
    except InvalidTransition:  # finished already: nothing runs
        pass
    except JobNotFound:
        return
    with transaction.atomic():
        GenerationJob.objects.filter(pk=job_id).delete()
        # A stage still writing stops at its next check; what it writes meanwhile is swept by maintenance.
        transaction.on_commit(partial(shutil.rmtree, job_media_dir(job_id), ignore_errors=True))
    logger.info("job %s: deleted", job_id, extra={"job_id": str(job_id)})


# The seed's class interface (CONTRACT.md), defined over the functions above.
from .job_service import JobService  # noqa: E402,F401
