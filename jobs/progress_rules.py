"""Recording a progress report: the rules, and the two implementations held to them.

The rules: only a processing job of the reporting attempt moves; progress is clamped to 0..100 and never
goes down within an attempt; with `part`, the value is that stage's own 0..100 (kept at its maximum) and
the job's progress is the stage-weighted sum of its parts; an event (seq, heartbeat, JobEvent, push) is
recorded only when progress or stage moved.

A report is the hottest write of the system (every running job, several times a second each). The locked
ORM path costs five round trips (BEGIN, SELECT FOR UPDATE, UPDATE, INSERT, COMMIT); on PostgreSQL one
statement (sql/report_progress.postgresql.sql) does the same in one. `report_progress` picks the
implementation by database vendor; tests/integration/test_progress_paths.py runs every case on both.
A report without `part` (the job's own progress) takes a smaller statement of the same rules
(sql/report_progress_whole.postgresql.sql): PostgreSQL plans each execution, and the general one's parts
and weights cost more to plan than the whole statement costs to run.
"""
from __future__ import annotations

import json
import logging
import uuid
from functools import lru_cache, partial
from pathlib import Path
from string import Template
from typing import Callable

from django.db import connection, transaction
from django.utils import timezone

from ops import metrics

from . import listeners, states
from .exceptions import JobNotFound
from .models import GenerationJob, JobEvent
from .records import clamp_progress, job_uuid, lock_job, record_event, trim_stage

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent / "sql"
Report = Callable[..., bool]


def stage_weights() -> dict[str, dict[str, float]]:
    """Each job type's stage weights (its plan's), imported on first use: web processes rarely need them."""
    from .plans import STAGE_WEIGHTS

    return STAGE_WEIGHTS


def weighted_progress(job_type: str, parts: dict[str, float]) -> float:
    """The job's progress from its stages' own progress; equal weights for a job type without any."""
    weights: dict[str, float] = dict(stage_weights().get(job_type) or {p: 1.0 for p in parts})
    total = sum(weights.values()) or 1.0
    return sum(weights[name] * float(parts.get(name, 0.0)) for name in weights) / total


def report_progress_locked(
    job_id: uuid.UUID | str, *, progress: float, stage: str | None, part: str | None, attempt: int | None
) -> bool:
    """The rules as ORM steps inside a transaction holding the job's row lock (any database)."""
    with transaction.atomic():
        job = lock_job(job_id)
        if job.status != states.PROCESSING or (attempt is not None and attempt != job.attempts):
            logger.debug("job %s: ignoring progress while %s", job.pk, job.status, extra={"job_id": str(job.pk)})
            return False
        value = clamp_progress(progress)
        if part:
            parts = dict(job.stage_progress or {})
            parts[part] = max(float(parts.get(part, 0.0)), value)
            job.stage_progress = parts
            value = clamp_progress(weighted_progress(job.job_type, parts))
        new_progress = max(job.progress, value)
        new_stage = trim_stage(stage) if stage is not None else job.current_stage
        if new_progress == job.progress and new_stage == job.current_stage:
            if part:  # a part that moved without moving the rounded total is still remembered
                job.save(update_fields=["stage_progress"])
            return False
        job.progress, job.current_stage, job.heartbeat_at = new_progress, new_stage, timezone.now()
        record_event(job, kind=JobEvent.PROGRESS, previous_status=job.status)
    return True


@lru_cache(maxsize=2)
def _statement(whole: bool = False) -> tuple[str, str]:
    """The PostgreSQL statement with this project's table names, and the stage weights as its JSON parameter;
    `whole`: the one for a report without `part`."""
    name = "report_progress_whole.postgresql.sql" if whole else "report_progress.postgresql.sql"
    text = (SQL_DIR / name).read_text(encoding="utf-8")
    sql = Template(text).substitute(job_table=connection.ops.quote_name(GenerationJob._meta.db_table),
                                    event_table=connection.ops.quote_name(JobEvent._meta.db_table))
    return sql, json.dumps(stage_weights())


def report_progress_statement(
    job_id: uuid.UUID | str, *, progress: float, stage: str | None, part: str | None, attempt: int | None
) -> bool:
    """The rules as one PostgreSQL statement in autocommit (the lock, the update and the event together)."""
    pk = job_uuid(job_id)
    sql, weights = _statement(whole=not part)
    params = {
        "id": pk, "processing": states.PROCESSING, "attempt": attempt, "part": part or None,
        "value": clamp_progress(progress), "weights": weights,
        "stage": trim_stage(stage) if stage is not None else None, "now": timezone.now(), "kind": JobEvent.PROGRESS,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        if not GenerationJob.objects.filter(pk=pk).exists():
            raise JobNotFound(job_id)
        logger.debug("job %s: ignoring progress (not processing, or another attempt)", job_id,
                     extra={"job_id": str(job_id)})
        return False
    if not row[-1]:  # nothing moved
        return False
    committed = _committed_progress(row)
    # In autocommit the statement has committed and these run at once; inside a caller's atomic block they
    # wait for its commit, as on the ORM path.
    transaction.on_commit(partial(listeners.event_committed, committed))
    transaction.on_commit(partial(metrics.count_event, JobEvent.PROGRESS))
    return True


def _committed_progress(row: tuple) -> listeners.CommittedEvent:
    """The listeners' event from the statement's returned row."""
    pk, project_id, job_type, seq, status, new_progress, new_stage, error_message, attempts, _ = row
    return listeners.CommittedEvent(
        job_id=str(pk), project_id=str(project_id), job_type=job_type, seq=seq, kind=JobEvent.PROGRESS,
        status=status, previous_status=status, progress=new_progress, current_stage=new_stage,
        error_message=error_message, result=None, attempt=attempts, message="",
    )


# The one-statement implementation of each database vendor that has one; the rest use the locked path.
STATEMENT_PATHS: dict[str, Report] = {"postgresql": report_progress_statement}


def report_progress(
    job_id: uuid.UUID | str, *, progress: float, stage: str | None, part: str | None, attempt: int | None
) -> bool:
    """Record one report by the fastest implementation this database has."""
    report = STATEMENT_PATHS.get(connection.vendor, report_progress_locked)
    return report(job_id, progress=progress, stage=stage, part=part, attempt=attempt)
