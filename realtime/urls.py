"""Routes of the Server-Sent Events streams; each works with and without the trailing slash."""
from __future__ import annotations

from api.routing import slash_optional

from .sse_views import JobStreamView, ProjectStreamView

urlpatterns = [
    *slash_optional("api/jobs/<str:job_id>/stream/", JobStreamView.as_view(), "api-job-stream"),
    *slash_optional("api/projects/<str:project_id>/stream/", ProjectStreamView.as_view(), "api-project-stream"),
]
