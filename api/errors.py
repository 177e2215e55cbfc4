"""Error answers: domain exceptions mapped to HTTP, and Django's error views as JSON for API paths.

Domain exceptions are mapped to HTTP answers here and nowhere else (STYLE.md): a view only calls a
service or selector and lets JobNotFound / InvalidTransition / InvalidJobInput travel up.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.response import Response

from jobs.exceptions import InvalidJobInput, InvalidTransition, JobNotFound, ProjectNotFound, TooManyQueuedJobs
from jobs.pipeline.store import StoreRefused, StoreUnavailable

from .parsers import max_body_bytes

logger = logging.getLogger(__name__)

JSON_PATH_PREFIXES = ("/api/", "/api", "/healthz")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler plus our domain errors; anything left unmapped is a bug and becomes a 500."""
    # Imported here: this module is named in REST_FRAMEWORK, which rest_framework.views reads on import.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, (JobNotFound, ProjectNotFound)):
        kind = "Job" if isinstance(exc, JobNotFound) else "Project"
        return Response({"detail": f"{kind} not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, InvalidTransition):
        return Response({"detail": exc.reason}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, TooManyQueuedJobs):
        return Response({"detail": exc.message, exc.field: [exc.message]}, status=status.HTTP_429_TOO_MANY_REQUESTS)
    if isinstance(exc, InvalidJobInput):
        return Response({exc.field: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (StoreUnavailable, StoreRefused)):  # a re-run's check reads the artifact store
        # The store's own words (endpoint, bucket, credentials) are for operators: logged, not answered.
        logger.warning("artifact store error answered 503: %s", exc)
        headers = {"Retry-After": "5"} if isinstance(exc, StoreUnavailable) else {}
        return Response({"detail": "The artifact store is unavailable; try again later."},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"Request body is larger than the limit of {max_body_bytes()} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "Bad request."}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


# --- Django's own error views (config/urls.py handler400…500): JSON for API paths, pages elsewhere ------

def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(JSON_PATH_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html") -> HttpResponse:
    if wants_json(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": f"Request body is larger than the limit of {max_body_bytes()} bytes."},
                                status=413)
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception, template_name)


def permission_denied(request: HttpRequest, exception: Exception, template_name: str = "403.html") -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception, template_name)


def page_not_found(request: HttpRequest, exception: Exception, template_name: str = "404.html") -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception, template_name)


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request, template_name)


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Catch-all for unknown /api/ paths: JSON 404 even with DEBUG on (Django's debug 404 is HTML)."""
    return JsonResponse({"detail": "Not found."}, status=404)


api_not_found.csrf_exempt = True  # type: ignore[attr-defined]  # a 404 needs no CSRF check
