"""URLconf of bench/bare_settings.py: GET /bare/<job id>/ -> one row as JSON."""
from __future__ import annotations

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import path

from jobs.models import GenerationJob


def bare_job(request: HttpRequest, job_id: str) -> JsonResponse:
    row = GenerationJob.objects.filter(pk=job_id).values("id", "status", "progress", "current_stage", "seq").first()
    if row is None:
        raise Http404
    return JsonResponse(row)


urlpatterns = [path("bare/<uuid:job_id>/", bare_job)]
