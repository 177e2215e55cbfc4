"""Retention and attempt clean-up on the local store: which keys go, which stay, and what the job says."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services, states
from jobs.models import GenerationJob
from jobs.retention import drop_other_attempts, expire_artifacts, expires_at
from jobs.store import get_store
from tests.factories import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ARTIFACT_RETENTION_DAYS = 30
    return get_store()


def _stored_job(store, status: str, *, days_ago: float, attempts: int = 1) -> GenerationJob:
    job = make_job()
    url = f"/api/jobs/{job.pk}/artifacts/a{attempts}/video.mp4"
    result = {"artifacts": [{"kind": "video", "url": url, "bytes": 3, "content_type": "video/mp4",
                             "name": "video.mp4"}], "scenes": 1, "expires_at": None}
    GenerationJob.objects.filter(pk=job.pk).update(
        status=status, attempts=attempts, completed_at=timezone.now() - timedelta(days=days_ago),
        result=result if status == states.COMPLETED else None)
    for attempt in range(1, attempts + 1):
        store.put_bytes(f"jobs/{job.pk}/a{attempt}/video.mp4", b"mp4", "video/mp4")
    return GenerationJob.objects.get(pk=job.pk)


def test_expire_artifacts__deletes_old_finished_jobs_files_in_batches_and_marks_them(store):
    old_done = _stored_job(store, states.COMPLETED, days_ago=31)
    old_failed = _stored_job(store, states.FAILED, days_ago=40, attempts=2)
    recent = _stored_job(store, states.COMPLETED, days_ago=29)

    report = expire_artifacts(batch=1)

    assert sorted(report.expired_jobs) == sorted([str(old_done.pk), str(old_failed.pk)])
    assert report.objects == 3 and report.errors == 0
    assert store.keys(f"jobs/{old_done.pk}") == store.keys(f"jobs/{old_failed.pk}") == []
    assert store.keys(f"jobs/{recent.pk}") == [f"jobs/{recent.pk}/a1/video.mp4"]
    old_done.refresh_from_db()
    assert old_done.result["expired"] is True and old_done.result["artifacts"] == [] and old_done.result["scenes"] == 1
    assert old_done.status == states.COMPLETED  # the status never changes
    assert expire_artifacts().expired_jobs == []  # done once


def test_expire_artifacts__a_job_retried_meanwhile_keeps_its_files(store):
    job = _stored_job(store, states.FAILED, days_ago=40)
    services.job_retry(job_id=job.pk)  # attempt 2 starts: it may already store files of its own
    store.put_bytes(f"jobs/{job.pk}/a2/scenes.json", b"[]", "application/json")

    report = expire_artifacts()

    # it is running again (its new attempt may reuse the old one's files): nothing of it is deleted
    assert report.expired_jobs == []
    assert store.keys(f"jobs/{job.pk}") == [f"jobs/{job.pk}/a1/video.mp4", f"jobs/{job.pk}/a2/scenes.json"]


def test_expire_artifacts__zero_days_keeps_everything(store, settings):
    settings.ARTIFACT_RETENTION_DAYS = 0
    job = _stored_job(store, states.COMPLETED, days_ago=3650)
    assert expire_artifacts().expired_jobs == [] and store.keys(f"jobs/{job.pk}") != []
    assert expires_at() is None


def test_drop_other_attempts__keeps_the_result_and_the_completing_attempt(store):
    job = _stored_job(store, states.COMPLETED, days_ago=0, attempts=3)
    store.put_bytes(f"jobs/{job.pk}/a1/images/scene_001.png", b"png", "image/png")  # a killed attempt's
    reused = f"jobs/{job.pk}/a2/audio/scene_001.wav"
    store.put_bytes(reused, b"wav", "audio/wav")
    result = {**job.result, "artifacts": [*job.result["artifacts"], {"url": f"/api/jobs/{job.pk}/artifacts/a2/audio/scene_001.wav"}]}

    assert drop_other_attempts(job.pk, 3, result) == 3  # a1's video and image, a2's video

    assert store.keys(f"jobs/{job.pk}") == [reused, f"jobs/{job.pk}/a3/video.mp4"]
