"""Read-only queries over projects, scoped to their owner."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jobs.exceptions import ProjectNotFound
from jobs.ids import parse_uuid

from .models import Project


def projects_for_user(*, user: Any) -> QuerySet[Project]:
    return Project.objects.filter(owner=user).order_by("-created_at")


def project_get_for_user(*, project_id: Any, user: Any) -> Project:
    """One of the user's projects; ProjectNotFound for unknown ids and other users' projects alike."""
    if parse_uuid(project_id) is None:
        raise ProjectNotFound(project_id)
    project = projects_for_user(user=user).filter(pk=project_id).first()
    if project is None:
        raise ProjectNotFound(project_id)
    return project


def projects_with_latest_job(*, user: Any) -> QuerySet[Project]:
    """The user's projects, newest first, annotated with their latest job's id, status and progress.

    Correlated subqueries keep the projects page at one query however many projects there are.
    """
    from django.db.models import OuterRef, Subquery

    from jobs.models import GenerationJob

    latest = GenerationJob.objects.filter(project=OuterRef("pk")).order_by("-created_at")
    return projects_for_user(user=user).annotate(
        latest_job_id=Subquery(latest.values("pk")[:1]),
        latest_job_status=Subquery(latest.values("status")[:1]),
        latest_job_progress=Subquery(latest.values("progress")[:1]),
        latest_job_type=Subquery(latest.values("job_type")[:1]),
    )
