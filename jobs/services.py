"""The job service: the only code that changes a GenerationJob.

Every change runs in a transaction holding the job's row lock (SELECT … FOR UPDATE on PostgreSQL; SQLite
serialises writers with BEGIN IMMEDIATE), records a JobEvent with the next `seq`, and hands the committed
event to jobs.listeners via `transaction.on_commit`. Worker-side calls (start, progress, complete, fail,
requeue) treat a late or replayed update as a logged no-op; caller-side actions (cancel, retry, a strict
status update) raise InvalidTransition so the API can answer 409.
"""
from __future__ import annotations

import logging
import uuid
from functools import lru_cache, partial
from typing import Any, Callable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ops import metrics

from . import listeners, states
from .exceptions import InvalidJobInput, InvalidTransition, JobNotFound
from .models import GenerationJob, JobEvent

logger = logging.getLogger(__name__)

STAGE_MAX_LENGTH = GenerationJob._meta.get_field("current_stage").max_length
_JOB_FIELDS_SAVED = [
    "status", "progress", "current_stage", "error_message", "result", "attempts", "lost_count", "seq",
    "stage_progress", "worker", "heartbeat_at", "queued_at", "dispatched_at", "celery_task_id",
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
    return (stage or "").strip()[:STAGE_MAX_LENGTH]


# --- internals ----------------------------------------------------------------------------------------

def _lock(job_id: uuid.UUID | str) -> GenerationJob:
    try:
        return GenerationJob.objects.select_for_update().get(pk=job_id)
    except (GenerationJob.DoesNotExist, ValueError, TypeError, ValidationError):  # ValidationError: not a UUID
        raise JobNotFound(job_id) from None


def _record_event(job: GenerationJob, *, kind: str, previous_status: str | None, message: str = "") -> JobEvent:
    """Save the locked job with the next seq, write its JobEvent, and schedule the hand-off on commit."""
    job.seq += 1
    job.updated_at = timezone.now()
    job.save(update_fields=_JOB_FIELDS_SAVED)
    event = JobEvent.objects.create(
        job=job, seq=job.seq, kind=kind, status=job.status, progress=job.progress,
        stage=job.current_stage, message=message[:2000], attempt=job.attempts,
    )
    committed = listeners.CommittedEvent(
        job_id=str(job.pk), project_id=str(job.project_id), job_type=job.job_type, seq=job.seq, kind=kind,
        status=job.status, previous_status=previous_status, progress=job.progress,
        current_stage=job.current_stage, error_message=job.error_message,
        result=job.result if job.status == states.COMPLETED else None, attempt=job.attempts, message=message,
    )
    transaction.on_commit(partial(listeners.event_committed, committed))
    transaction.on_commit(metrics.job_event_hook(job, kind=kind, previous_status=previous_status))
    return event


def _transition(
    job_id: uuid.UUID | str,
    target: str,
    *,
    strict: bool,
    retry: bool = False,
    attempt: int | None = None,
    message: str = "",
    mutate: Callable[[GenerationJob], None] | None = None,
    refusal: str | None = None,
) -> GenerationJob | None:
    """Move a job to `target` under its row lock; None (logged) for a refused non-strict move."""
    with transaction.atomic():
        job = _lock(job_id)
        if attempt is not None and attempt != job.attempts:
            logger.info("job %s: ignoring %s from stale attempt %s (now %s)", job.pk, target, attempt, job.attempts,
                        extra={"job_id": str(job.pk)})
            return None
        # An explicit retry is only the failed|cancelled -> queued move, never processing -> queued.
        allowed = target in states.RETRY_TRANSITIONS.get(job.status, frozenset()) if retry else (
            states.can_transition(job.status, target))
        if not allowed:
            if strict:
                raise InvalidTransition(job.pk, job.status, target, refusal and refusal.format(status=job.status))
            logger.info("job %s: ignoring late %s -> %s", job.pk, job.status, target, extra={"job_id": str(job.pk)})
            return None
        previous = job.status
        now = timezone.now()
        job.status = target
        if target == states.PROCESSING:
            job.started_at = now
            job.heartbeat_at = now
        elif target == states.QUEUED:
            # Back to queued is always a new attempt (retry, lost worker, or a plain status update), so late
            # updates of the old attempt are refused and progress starts over without "going down".
            job.attempts += 1
            job.queued_at = now
            job.dispatched_at = None
            job.celery_task_id = ""
            job.worker = ""
            job.heartbeat_at = None
            job.progress = 0.0
            job.stage_progress = {}
            job.current_stage = ""
            job.started_at = None
            job.completed_at = None
            job.error_message = None
            job.result = None
        if target in states.TERMINAL:
            job.completed_at = now
            job.heartbeat_at = None
        if target == states.COMPLETED:
            job.progress = 100.0
        if mutate is not None:
            mutate(job)
        _record_event(job, kind=JobEvent.STATUS, previous_status=previous, message=message)
    logger.info("job %s: %s -> %s%s", job.pk, previous, target, f" ({message})" if message else "",
                extra={"job_id": str(job.pk), "status": target, "attempt": job.attempts})
    return job


# --- public operations --------------------------------------------------------------------------------

def job_create(*, project: Any, job_type: str, params: dict | None = None) -> GenerationJob:
    """Validate and create a queued job; its work is dispatched once the transaction commits."""
    from .validation import validate_job_input

    clean_params = validate_job_input(job_type=job_type, params=params, script=getattr(project, "script", None),
                                      project=project)
    with transaction.atomic():
        now = timezone.now()
        job = GenerationJob.objects.create(
            project=project, job_type=job_type, status=states.QUEUED, params=clean_params, queued_at=now
        )
        job = _lock(job.pk)
        _record_event(job, kind=JobEvent.STATUS, previous_status=None, message="Job created")
    logger.info("job %s: created (%s) for project %s", job.pk, job_type, project.pk,
                extra={"job_id": str(job.pk), "project_id": str(project.pk)})
    return job


def job_get(*, job_id: uuid.UUID | str) -> GenerationJob:
    """A job by id (no owner check; selectors.job_get_for_user scopes by owner)."""
    try:
        return GenerationJob.objects.select_related("project").get(pk=job_id)
    except (GenerationJob.DoesNotExist, ValueError, TypeError, ValidationError):
        raise JobNotFound(job_id) from None


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
    all parts, so stages running in parallel combine into one rising number.

    On PostgreSQL this is one statement (`_REPORT_PROGRESS_SQL`); elsewhere the locked ORM path.
    """
    from django.db import connection

    report = _report_progress_one_statement if (
        ONE_STATEMENT_PROGRESS and connection.vendor == "postgresql") else _report_progress_locked
    return report(job_id, progress=progress, stage=stage, part=part, attempt=attempt)


def _report_progress_locked(
    job_id: uuid.UUID | str, *, progress: float, stage: str | None, part: str | None, attempt: int | None
) -> bool:
    with transaction.atomic():
        job = _lock(job_id)
        if job.status != states.PROCESSING or (attempt is not None and attempt != job.attempts):
            logger.debug("job %s: ignoring progress while %s", job.pk, job.status, extra={"job_id": str(job.pk)})
            return False
        value = clamp_progress(progress)
        if part:
            parts = dict(job.stage_progress or {})
            parts[part] = max(float(parts.get(part, 0.0)), value)
            job.stage_progress = parts
            value = clamp_progress(_weighted_progress(job.job_type, parts))
        new_progress = max(job.progress, value)  # never down within an attempt
        new_stage = trim_stage(stage) if stage is not None else job.current_stage
        if new_progress == job.progress and new_stage == job.current_stage:
            if part:
                job.save(update_fields=["stage_progress"])
            return False
        job.progress = new_progress
        job.current_stage = new_stage
        job.heartbeat_at = timezone.now()
        _record_event(job, kind=JobEvent.PROGRESS, previous_status=job.status)
    return True


def _stage_weights() -> dict[str, dict[str, float]]:
    try:
        from .plans import STAGE_WEIGHTS
    except ImportError:  # pipeline not installed: equal weights over the parts seen
        return {}
    return STAGE_WEIGHTS


def _weighted_progress(job_type: str, parts: dict[str, float]) -> float:
    STAGE_WEIGHTS = _stage_weights()
    weights: dict[str, float] = dict(STAGE_WEIGHTS.get(job_type) or {p: 1.0 for p in parts})
    total = sum(weights.values()) or 1.0
    return sum(weights[name] * float(parts.get(name, 0.0)) for name in weights) / total


# A progress report is the hottest write of the system (every running job, up to N a second each, and it sits
# between the worker's call and the websocket push). The ORM path above costs five round trips (BEGIN, SELECT
# FOR UPDATE, UPDATE, INSERT, COMMIT); this statement does the same in one, in autocommit: it locks the
# row, merges the stage's part into `stage_progress`, computes the weighted progress (never down), bumps
# `seq` and writes the JobEvent only if progress or stage moved, and returns the new state. The rules are the
# locked path's (tests/integration/test_progress_paths.py runs every case on both).
ONE_STATEMENT_PROGRESS = True  # tests switch it off to hold both paths to the same cases
_REPORT_PROGRESS_SQL = """
WITH prev AS (
    SELECT id, progress, current_stage, COALESCE(stage_progress, '{{}}'::jsonb) AS sp, job_type
    FROM {job} WHERE id = %(id)s AND status = %(processing)s
        AND (%(attempt)s::integer IS NULL OR attempts = %(attempt)s::integer)
    FOR UPDATE
), parts AS (
    SELECT prev.*, CASE WHEN %(part)s::text IS NULL THEN prev.sp ELSE prev.sp || jsonb_build_object(
        %(part)s::text, GREATEST(COALESCE((prev.sp ->> %(part)s::text)::float8, 0), %(value)s::float8)) END AS new_sp
    FROM prev
), calc AS (
    SELECT parts.id, parts.new_sp,
        GREATEST(parts.progress, CASE WHEN %(part)s::text IS NULL THEN %(value)s::float8 ELSE round(COALESCE(
            (SELECT SUM(w.value::float8 * COALESCE((parts.new_sp ->> w.key)::float8, 0)) / NULLIF(SUM(w.value::float8), 0)
             FROM jsonb_each_text(%(weights)s::jsonb -> parts.job_type) AS w),
            (SELECT AVG(p.value::float8) FROM jsonb_each_text(parts.new_sp) AS p),
            0)::numeric, 1)::float8 END) AS new_progress,
        COALESCE(%(stage)s::text, parts.current_stage) AS new_stage,
        parts.progress AS old_progress, parts.current_stage AS old_stage
    FROM parts
), moved AS (
    SELECT calc.*, (calc.new_progress <> calc.old_progress OR calc.new_stage <> calc.old_stage) AS changed FROM calc
), upd AS (
    UPDATE {job} AS j SET
        stage_progress = moved.new_sp, progress = moved.new_progress, current_stage = moved.new_stage,
        seq = CASE WHEN moved.changed THEN j.seq + 1 ELSE j.seq END,
        heartbeat_at = CASE WHEN moved.changed THEN %(now)s ELSE j.heartbeat_at END,
        updated_at = CASE WHEN moved.changed THEN %(now)s ELSE j.updated_at END
    FROM moved WHERE j.id = moved.id AND (moved.changed OR %(part)s::text IS NOT NULL)
    RETURNING j.id, j.project_id, j.job_type, j.seq, j.status, j.progress, j.current_stage, j.error_message,
        j.attempts, moved.changed
), ins AS (
    INSERT INTO {event} (job_id, seq, kind, status, progress, stage, message, attempt, created_at)
    SELECT upd.id, upd.seq, %(kind)s, upd.status, upd.progress, upd.current_stage, '', upd.attempts, %(now)s
    FROM upd WHERE upd.changed
)
SELECT id, project_id, job_type, seq, status, progress, current_stage, error_message, attempts, changed FROM upd
"""


@lru_cache(maxsize=1)
def _report_progress_statement() -> tuple[str, str]:
    """The statement with this project's table names, and the stage weights as its JSON parameter."""
    import json

    from django.db import connection

    sql = _REPORT_PROGRESS_SQL.format(job=connection.ops.quote_name(GenerationJob._meta.db_table),
                                      event=connection.ops.quote_name(JobEvent._meta.db_table))
    return sql, json.dumps(_stage_weights())


def _report_progress_one_statement(
    job_id: uuid.UUID | str, *, progress: float, stage: str | None, part: str | None, attempt: int | None
) -> bool:
    from django.db import connection

    try:
        job_uuid = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except (ValueError, TypeError, AttributeError):
        raise JobNotFound(job_id) from None
    sql, weights = _report_progress_statement()
    params = {
        "id": job_uuid, "processing": states.PROCESSING, "attempt": attempt, "part": part or None,
        "value": clamp_progress(progress), "weights": weights,
        "stage": trim_stage(stage) if stage is not None else None, "now": timezone.now(), "kind": JobEvent.PROGRESS,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        if not GenerationJob.objects.filter(pk=job_uuid).exists():
            raise JobNotFound(job_id)
        logger.debug("job %s: ignoring progress (not processing, or another attempt)", job_id,
                     extra={"job_id": str(job_id)})
        return False
    pk, project_id, job_type, seq, status, new_progress, new_stage, error_message, attempts, changed = row
    if not changed:
        return False
    committed = listeners.CommittedEvent(
        job_id=str(pk), project_id=str(project_id), job_type=job_type, seq=seq, kind=JobEvent.PROGRESS,
        status=status, previous_status=status, progress=new_progress, current_stage=new_stage,
        error_message=error_message, result=None, attempt=attempts, message="",
    )
    # In autocommit the statement has committed and these run at once; inside a caller's atomic block they
    # wait for its commit, as on the ORM path.
    transaction.on_commit(partial(listeners.event_committed, committed))
    transaction.on_commit(partial(metrics.count_event, JobEvent.PROGRESS))
    return True


def job_complete(
    *, job_id: uuid.UUID | str, result: dict | None = None, attempt: int | None = None
) -> GenerationJob | None:
    """processing -> completed with its result and progress 100; a replay is a no-op."""

    def mutate(job: GenerationJob) -> None:
        job.result = result if result is not None else {}
        job.current_stage = "Completed"
        job.error_message = None

    return _transition(job_id, states.COMPLETED, strict=False, attempt=attempt, message="Completed", mutate=mutate)


def job_fail(
    *, job_id: uuid.UUID | str, error_message: str, attempt: int | None = None
) -> GenerationJob | None:
    """queued|processing -> failed with a user-facing message; progress reached is kept."""
    text = (error_message or "failed").strip()[:2000]

    def mutate(job: GenerationJob) -> None:
        job.error_message = text

    return _transition(job_id, states.FAILED, strict=False, attempt=attempt, message=text, mutate=mutate)


def job_cancel(*, job_id: uuid.UUID | str, reason: str = "Cancelled by user") -> GenerationJob:
    """Cancel an unfinished job (InvalidTransition if it already finished); the task is stopped on commit."""

    def mutate(job: GenerationJob) -> None:
        job.current_stage = trim_stage("Cancelled")

    job = _transition(job_id, states.CANCELLED, strict=True, message=reason, mutate=mutate)
    assert job is not None
    return job


def job_retry(*, job_id: uuid.UUID | str) -> GenerationJob:
    """A failed or cancelled job goes back to queued as a new attempt (InvalidTransition otherwise)."""

    def mutate(job: GenerationJob) -> None:
        job.lost_count = 0  # the new attempt (counted by _transition) starts with a clean slate

    job = _transition(job_id, states.QUEUED, strict=True, retry=True, message="Retry requested", mutate=mutate,
                      refusal="job is {status}; only failed or cancelled jobs can be retried")
    assert job is not None
    return job


def job_requeue(*, job_id: uuid.UUID | str, reason: str, attempt: int | None = None) -> GenerationJob | None:
    """processing -> queued as a new attempt after its worker was lost (used by the reaper)."""

    def mutate(job: GenerationJob) -> None:
        job.lost_count += 1

    return _transition(job_id, states.QUEUED, strict=False, attempt=attempt, message=reason, mutate=mutate)


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
