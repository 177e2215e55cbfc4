"""Read-only queries over projects, scoped to their owner."""
from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from jobs.exceptions import ProjectNotFound

from .models import Project


def projects_for_user(*, user: Any) -> QuerySet[Project]:
    return Project.objects.filter(owner=user).order_by("-created_at")


def project_get_for_user(*, project_id: Any, user: Any) -> Project:
    """One of the user's projects; ProjectNotFound for unknown ids and other users' projects alike."""
    try:
        uuid.UUID(str(project_id))
    except (ValueError, TypeError, AttributeError):
        raise ProjectNotFound(project_id) from None
    project = projects_for_user(user=user).filter(pk=project_id).first()
    if project is None:
        raise ProjectNotFound(project_id)
    return project
