"""Every API endpoint once, as (name, method, path template, json body) for matrix tests."""
from __future__ import annotations

from typing import Any


def endpoints(project_id: Any, job_id: Any) -> list[tuple[str, str, str, dict | None]]:
    """Each owner-scoped endpoint with a valid body, for the given project and job ids."""
    return [
        ("project-list", "get", "/api/projects/", None),
        ("project-create", "post", "/api/projects/", {"name": "New"}),
        ("project-get", "get", f"/api/projects/{project_id}/", None),
        ("project-patch", "patch", f"/api/projects/{project_id}/", {"name": "Renamed"}),
        ("project-delete", "delete", f"/api/projects/{project_id}/", None),
        ("job-list", "get", "/api/jobs/", None),
        ("job-create", "post", "/api/jobs/", {"project_id": str(project_id), "job_type": "image_generation"}),
        ("job-get", "get", f"/api/jobs/{job_id}/", None),
        ("job-cancel", "post", f"/api/jobs/{job_id}/cancel/", None),
        ("job-retry", "post", f"/api/jobs/{job_id}/retry/", None),
        ("job-events", "get", f"/api/jobs/{job_id}/events/", None),
        ("job-artifact", "get", f"/api/jobs/{job_id}/artifacts/video.mp4", None),
        ("job-deliveries", "get", f"/api/jobs/{job_id}/deliveries/", None),
    ]


ENDPOINT_NAMES = [name for name, *_ in endpoints("p", "j")]
