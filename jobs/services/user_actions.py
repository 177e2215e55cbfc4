"""What a user or staff asks of a job: cancel, retry (or re-run from a stage), change priority, delete.
A move the state table refuses raises InvalidTransition so the API can answer 409."""
from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import Any

from django.db import transaction

from .. import states
from ..exceptions import InvalidJobInput, InvalidTransition, JobNotFound
from ..models import GenerationJob
from ..records import lock_job
from ..retention import delete_job_files
from .creation import job_get
from .transitions import _cancelling, _transition

logger = logging.getLogger("jobs.services")


def job_cancel(*, job_id: uuid.UUID | str, reason: str = "Cancelled by user") -> GenerationJob:
    """Cancel an unfinished job (InvalidTransition if it already finished); the task is stopped on commit."""
    job = _transition(job_id, states.CANCELLED, strict=True, message=reason, mutate=_cancelling)
    assert job is not None
    return job


EXTERNAL_RETRY_REFUSAL = ("job is {status} and its work is done by the task that created it (celery_task_id), "
                          "which the platform cannot send again; create a new job from that task instead")


def job_retry(*, job_id: uuid.UUID | str, from_stage: str | None = None) -> GenerationJob:
    """A failed or cancelled job goes back to queued as a new attempt (InvalidTransition otherwise, and
    for an external job: nothing would run the new attempt). The attempt reuses every scene artifact whose
    inputs are unchanged (jobs/scenes.py).

    `from_stage` (any stage of the job's plan; one of a parallel step means the whole step): a re-run that a
    completed job may have too. The stages before it are not run again: the new attempt takes their outputs
    from the current attempt (jobs/rerun.py), which must have stored them (InvalidJobInput naming
    `from_stage` otherwise). `parse`, the first stage, reads the script again, e.g. after an edit."""
    job = job_get(job_id=job_id)
    if job.external:  # never changes after create, so reading it outside the lock is safe
        raise InvalidTransition(job.pk, job.status, states.QUEUED, EXTERNAL_RETRY_REFUSAL.format(status=job.status))
    if job.status in states.RETRYABLE or from_stage is not None:  # it adds a waiting job like a create does
        from ..fairness import check_queued_cap

        check_queued_cap(owner_id=job.project.owner_id)
    from ..rerun import check_rerun  # imported here: it reads the plans and the store

    source = None if from_stage is None else check_rerun(job, from_stage)
    checked = job.attempts

    def mutate(job: GenerationJob) -> None:
        job.lost_count = 0  # the new attempt (counted by _transition) starts with a clean slate
        if source is not None and job.attempts - 1 != checked:  # another attempt came and went since the check
            raise InvalidTransition(job.pk, job.status, states.QUEUED, "the job changed meanwhile; try again")
        job.rerun_from, job.rerun_source = from_stage or "", source

    message = "Retry requested" if from_stage is None else f"Re-run requested from the {from_stage} stage"
    job = _transition(job_id, states.QUEUED, strict=True, retry=True, message=message, mutate=mutate,
                      rerun=from_stage is not None,
                      refusal="job is {status}; only failed or cancelled jobs can be retried"
                      + ("" if from_stage is None else ", or finished ones re-run from a stage"))
    assert job is not None
    return job


def job_set_priority(*, job_id: uuid.UUID | str, priority: str) -> GenerationJob:
    """Staff: change a waiting job's priority (InvalidTransition once it was admitted or finished)."""
    from ..fairness import check_priority

    check_priority(priority)
    with transaction.atomic():
        job = lock_job(job_id)
        if job.status != states.QUEUED or job.admitted_at is not None:
            raise InvalidTransition(job.pk, job.status, job.status, "only a job still waiting for a slot can change priority")
        GenerationJob.objects.filter(pk=job.pk).update(priority=priority)
        job.priority = priority
    from ..admission import admit_safely

    transaction.on_commit(admit_safely)
    return job


def jobs_cancel_queued_for_user(*, user_id: Any, reason: str) -> int:
    """Cancel every queued job of one user (staff's bulk action); returns how many were cancelled."""
    count = 0
    for job_id in GenerationJob.objects.filter(project__owner_id=user_id, status=states.QUEUED).values_list("pk", flat=True):
        try:
            job_cancel(job_id=job_id, reason=reason)
            count += 1
        except InvalidTransition:  # started or finished meanwhile
            pass
    return count


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
        transaction.on_commit(partial(delete_job_files, job_id))
    logger.info("job %s: deleted", job_id, extra={"job_id": str(job_id)})
