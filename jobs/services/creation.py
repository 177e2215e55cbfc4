"""Creating a job and reading one by id."""
from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import states
from ..exceptions import JobNotFound
from ..ids import parse_uuid
from ..models import GenerationJob, JobEvent
from ..records import next_event

logger = logging.getLogger("jobs.services")


def job_create(
    *, project: Any, job_type: str, params: dict | None = None, webhook_url: str | None = None,
    webhook_events_filter: list[str] | None = None, external_task_id: str = "", priority: str = "normal",
    start_timeout_s: int | None = None, max_runtime_s: int | None = None,
) -> GenerationJob:
    """Validate and create a queued job; its plan is dispatched once the transaction commits, unless
    `external_task_id` names the caller's own task that does the work (the job is then `external`).

    `webhook_url` must already be checked (webhooks.guard); the webhooks app reads both fields. `priority`
    and the deadlines are checked here (who may ask `high` is the caller's check: jobs/fairness.py)."""
    from ..fairness import check_deadlines, check_priority, check_queued_cap
    from ..plans import get_plan
    from ..validation import validate_job_input

    check_priority(priority)
    check_deadlines(start_timeout_s=start_timeout_s, max_runtime_s=max_runtime_s)
    if not external_task_id:
        check_queued_cap(owner_id=project.owner_id)

    clean_params = validate_job_input(job_type=job_type, params=params, script=getattr(project, "script", None),
                                      project=project)
    with transaction.atomic():
        now = timezone.now()
        job = GenerationJob(
            project=project, job_type=job_type, status=states.QUEUED, params=clean_params, queued_at=now,
            webhook_url=webhook_url or None, webhook_events_filter=list(webhook_events_filter or ["completed"]),
            external=bool(external_task_id), celery_task_id=external_task_id[:255],
            dispatched_at=now if external_task_id else None, admitted_at=now if external_task_id else None,
            priority=priority, queue=get_plan(job_type).first_stage.queue, start_timeout_s=start_timeout_s,
            max_runtime_s=max_runtime_s,
        )
        # Its first event (seq 1) is ready before the row is written, so the job is one INSERT (it was an
        # INSERT, a re-read under lock and an UPDATE of the same row: nobody else sees it before COMMIT).
        event, hooks = next_event(job, kind=JobEvent.STATUS, previous_status=None, message="Job created")
        job.save(force_insert=True)
        event.save(force_insert=True)
        for hook in hooks:
            transaction.on_commit(hook)
    logger.info("job %s: created (%s) for project %s", job.pk, job_type, project.pk,
                extra={"job_id": str(job.pk), "project_id": str(project.pk)})
    return job


def job_get(*, job_id: uuid.UUID | str) -> GenerationJob:
    """A job by id (no owner check; selectors.job_get_for_user scopes by owner)."""
    job = GenerationJob.objects.select_related("project").filter(pk=parse_uuid(job_id)).first()
    if job is None:
        raise JobNotFound(job_id)
    return job
