"""JobService: the job API the platform's design documents describe (CONTRACT.md, "The seed's programming
interface"), over the service functions of jobs/services/.

Written for tasks that drive their own job: create it, report progress, mark it completed or failed.
Progress is clamped to 0..100 and never goes down; timestamps are set by the transitions; a job still
queued when its first progress or completion arrives is started first (queued -> processing -> …), so
such a task never has to call a "start". Updates to a finished job are logged no-ops that return the job
as it is (cancel wins over a late completion).
"""
from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from . import selectors, services, states
from .exceptions import ProjectNotFound
from .ids import parse_uuid
from .models import GenerationJob


def _project(project_id: uuid.UUID | str) -> Any:
    from projects.models import Project

    project = Project.objects.filter(pk=parse_uuid(project_id)).first()
    if project is None:
        raise ProjectNotFound(project_id)
    return project


class JobService:
    """Every method is a static method: `JobService.create_job(...)` and `JobService().create_job(...)` both work."""

    @staticmethod
    def create_job(project_id: uuid.UUID | str, job_type: str, celery_task_id: str | None = None,
                   params: dict | None = None) -> GenerationJob:
        """A queued job of an existing project (ProjectNotFound otherwise; InvalidJobInput for bad input).

        With `celery_task_id` the caller's own task does the work: the job is `external`, its type's plan is
        never dispatched, a cancel revokes that task, a retry is refused (409) and a lost worker fails it.
        """
        return services.job_create(project=_project(project_id), job_type=job_type, params=params,
                                   external_task_id=celery_task_id or "")

    @staticmethod
    def get_job(job_id: uuid.UUID | str) -> GenerationJob:
        """The job (JobNotFound for an unknown id)."""
        return services.job_get(job_id=job_id)

    @staticmethod
    def update_job_status(job_id: uuid.UUID | str, status: str, progress: float | None = None,
                          current_stage: str | None = None) -> GenerationJob:
        """Move the job to `status` (through processing if it is still queued), with progress and stage."""
        services.job_advance(job_id=job_id, status=status, progress=progress, stage=current_stage)
        return services.job_get(job_id=job_id)

    @staticmethod
    def update_job_progress(job_id: uuid.UUID | str, progress: float,
                            current_stage: str | None = None) -> GenerationJob:
        """Record progress (0..100, never down); a job still queued is started first."""
        services.job_advance(job_id=job_id, status=states.PROCESSING, progress=progress, stage=current_stage)
        return services.job_get(job_id=job_id)

    @staticmethod
    def mark_job_completed(job_id: uuid.UUID | str, result: dict | None = None) -> GenerationJob:
        """The job is completed with `result` (progress 100, completed_at set)."""
        services.job_advance(job_id=job_id, status=states.COMPLETED, result=result)
        return services.job_get(job_id=job_id)

    @staticmethod
    def mark_job_failed(job_id: uuid.UUID | str, error_message: str) -> GenerationJob:
        """The job failed with a message its owner will read (progress reached is kept)."""
        services.job_advance(job_id=job_id, status=states.FAILED, error_message=error_message)
        return services.job_get(job_id=job_id)

    @staticmethod
    def cancel_job(job_id: uuid.UUID | str) -> GenerationJob:
        """Cancel an unfinished job (InvalidTransition if it already finished); its tasks are stopped."""
        return services.job_cancel(job_id=job_id)

    @staticmethod
    def get_project_jobs(project_id: uuid.UUID | str) -> QuerySet[GenerationJob]:
        """The project's jobs, newest first (ProjectNotFound for an unknown project)."""
        project = _project(project_id)
        return selectors.jobs_for_project(project_id=project.pk)
