"""Where a job's files live (keys in the artifact store, scratch on this machine) and the URL each is
downloaded from: the one definition of all three.

Keys: `jobs/<job id>/a<attempt>/<file>`. Every attempt stores under its own prefix, so an attempt that was
superseded (cancelled, requeued after a lost worker) can never overwrite or delete what a later attempt made.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings


def job_prefix(job_id: object) -> str:
    """The prefix of every key of a job: `jobs/<job id>`."""
    return f"jobs/{job_id}"


def attempt_prefix(job_id: object, attempt: int) -> str:
    """The prefix one attempt stores under: `jobs/<job id>/a<attempt>`."""
    return f"{job_prefix(job_id)}/a{int(attempt)}"


def artifact_key(job_id: object, relative_path: str) -> str:
    """The key a download URL's path (relative to the job) names."""
    return f"{job_prefix(job_id)}/{relative_path}"


def artifact_url(job_id: object, relative_path: str) -> str:
    """The owner-scoped download URL of a key relative to the job (jobs/api/artifacts.py serves it)."""
    return f"/api/jobs/{job_id}/artifacts/{relative_path}"


def key_url(job_id: object, key: str) -> str:
    """The download URL of one of the job's keys."""
    return artifact_url(job_id, key.removeprefix(job_prefix(job_id) + "/"))


def url_key(job_id: object, url: str) -> str | None:
    """The key behind one of the job's download URLs (None for a URL that is not one)."""
    base = artifact_url(job_id, "")
    return artifact_key(job_id, url[len(base):]) if url.startswith(base) and len(url) > len(base) else None


def jobs_media_root() -> Path:
    """With the local store: the folder holding every job's files, MEDIA_ROOT/jobs/."""
    return Path(settings.MEDIA_ROOT) / "jobs"


def job_media_dir(job_id: object) -> Path:
    """With the local store: a job's folder, MEDIA_ROOT/jobs/<job id>/ (its keys, as paths)."""
    return jobs_media_root() / str(job_id)


def scratch_root() -> Path:
    """This machine's scratch space for running stages: MEDIA_ROOT/scratch/ (one folder per running stage)."""
    return Path(settings.MEDIA_ROOT) / "scratch"
