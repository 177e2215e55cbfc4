"""Writes to user accounts that must go through the job and project services."""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from projects.services import project_delete

logger = logging.getLogger(__name__)


def user_delete(*, user: Any) -> None:
    """Delete each of the user's projects through the project service (cancelling their unfinished jobs
    and removing their files), then the user; a plain delete would cascade past both."""
    for project in list(user.projects.all()):
        project_delete(project=project)
    with transaction.atomic():
        user.delete()
    logger.info("user %s: deleted", user.pk)
