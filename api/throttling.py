"""Per-user rate limits of the API."""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class JobCreateThrottle(SimpleRateThrottle):
    """Per-user limit on job creation; the rate is read on every request so tests and env can change it.

    The cache is best-effort: if it is unreachable the request is allowed (a throttle must not turn an
    outage of Redis into 500s for every job creation).
    """

    scope = "job_create"

    def get_rate(self) -> str | None:
        return settings.API_JOB_CREATE_RATE or None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("job-create throttle cache unavailable; allowing the request", exc_info=True)
            return True


def job_create_allowed(request: Any) -> bool:
    """The same per-user creation limit for the pages (project forms, retry buttons): every way of queuing
    work counts against JOBS_CREATE_RATE, or the API's limit could be walked around through a form."""
    return JobCreateThrottle().allow_request(request, None)


THROTTLED_TEXT = "You are creating jobs too fast (JOBS_CREATE_RATE); try again in a minute."
