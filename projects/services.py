"""Writes to projects; deleting a project cancels its unfinished jobs first, through the job service."""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from jobs.retention import delete_job_files
from jobs.services import jobs_cancel_unfinished

from .models import Project

logger = logging.getLogger(__name__)


def project_create(*, owner: Any, name: str, script: str = "") -> Project:
    project = Project.objects.create(owner=owner, name=name.strip(), script=script)
    logger.info("project %s: created", project.pk, extra={"project_id": str(project.pk)})
    return project


def project_update(*, project: Project, name: str | None = None, script: str | None = None) -> Project:
    if name is not None:
        project.name = name.strip()
    if script is not None:
        project.script = script
    project.save()
    return project


def project_delete(*, project: Project) -> None:
    """Cancel unfinished jobs, delete the rows, then remove the jobs' stored artifacts."""
    job_ids = [str(pk) for pk in project.jobs.values_list("pk", flat=True)]
    cancelled = jobs_cancel_unfinished(project_id=project.pk)
    with transaction.atomic():
        project.delete()
    for job_id in job_ids:
        delete_job_files(job_id)
    logger.info("project %s: deleted (%d jobs cancelled)", project.pk, cancelled, extra={"project_id": str(project.pk)})
