"""A project deleted while its job's stage runs leaves no folder behind once maintenance swept."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from jobs import leases
from jobs.media_sweep import media_sweep
from jobs.models import GenerationJob
from projects.services import project_delete
from tests.processes import wait_until

from .conftest import LIMITS, TINY_IMAGES, owned_jobs

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


def test_media_leaks__project_deleted_mid_stage_leaves_no_orphan_folder(processes, backend):
    # given a worker running the images stage of a job whose scenes each take 0.5 s at the backend
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, **LIMITS)
    texts = tuple(f"Scene [slow:0.5] number {n}." for n in range(10))
    (job,), _ = owned_jobs(texts, 1, params=TINY_IMAGES)
    folder = Path(settings.MEDIA_ROOT) / "jobs" / str(job.pk)
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).progress > 20 and any(folder.rglob("*.png")), 60,
               message="the images stage to write its first images")
    attempt = GenerationJob.objects.get(pk=job.pk).attempts

    # when its project is deleted mid-stage, and the stage stops
    project_delete(project=job.project)
    wait_until(lambda: all(lease.state != leases.RUNNING for lease in leases.stage_leases(job.pk, attempt, "images")),
               30, message="the images stage to stop")

    # then maintenance removes whatever the stage wrote after the delete, and nothing of the job is left
    media_sweep()
    assert not folder.exists()
