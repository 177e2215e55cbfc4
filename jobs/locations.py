"""Where a job's files live and the URL each one is downloaded from (the one definition of both)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings


def jobs_media_root() -> Path:
    """The folder holding every job's files: MEDIA_ROOT/jobs/."""
    return Path(settings.MEDIA_ROOT) / "jobs"


def job_media_dir(job_id: object) -> Path:
    """Where a job's stages write their files: MEDIA_ROOT/jobs/<job id>/."""
    return jobs_media_root() / str(job_id)


def artifact_url(job_id: object, relative_path: str) -> str:
    """The owner-scoped download URL of a file under the job's folder (jobs/api/artifacts.py serves it)."""
    return f"/api/jobs/{job_id}/artifacts/{relative_path}"
