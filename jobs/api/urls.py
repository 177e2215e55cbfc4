"""Routes of the jobs API; each works with and without the trailing slash."""
from __future__ import annotations

from django.urls import path

from api.routing import slash_optional

from .artifacts import JobArtifactView
from .views import JobCancelView, JobDetailView, JobEventsView, JobListCreateView, JobRetryView

urlpatterns = [
    *slash_optional("api/jobs/", JobListCreateView.as_view(), "api-job-list"),
    *slash_optional("api/jobs/<str:job_id>/", JobDetailView.as_view(), "api-job-detail"),
    *slash_optional("api/jobs/<str:job_id>/cancel/", JobCancelView.as_view(), "api-job-cancel"),
    *slash_optional("api/jobs/<str:job_id>/retry/", JobRetryView.as_view(), "api-job-retry"),
    *slash_optional("api/jobs/<str:job_id>/events/", JobEventsView.as_view(), "api-job-events"),
    path("api/jobs/<str:job_id>/artifacts/<path:path>", JobArtifactView.as_view(), name="api-job-artifact"),
]
