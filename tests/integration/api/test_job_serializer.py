"""JobSerializer's shared-fields representation is exactly what DRF's ModelSerializer would produce."""
from __future__ import annotations

import json

import pytest
from django.utils import timezone
from rest_framework import serializers

from jobs import services
from jobs.api.serializers import JobSerializer
from tests.factories import make_job, make_processing_job

pytestmark = pytest.mark.django_db(transaction=True)


def drf_generic(job) -> dict:
    return serializers.ModelSerializer.to_representation(JobSerializer(job), job)


def jobs_in_every_shape() -> list:
    queued = make_job(job_type="audio_generation", params={})
    running = make_processing_job()
    services.job_report_progress(job_id=running.pk, progress=12.34, stage="Generating images")
    done = make_processing_job(job_type="full_video")
    services.job_complete(job_id=done.pk, result={"artifacts": [{"kind": "video", "url": "/x", "bytes": 1,
                                                                  "content_type": "video/mp4"}]})
    failed = make_processing_job()
    services.job_fail(job_id=failed.pk, error_message="The image backend refused the prompt")
    return [type(queued).objects.get(pk=job.pk) for job in (queued, running, done, failed)]


def test_representation__field_for_field_drf_output() -> None:
    for job in jobs_in_every_shape():
        ours = JobSerializer(job).data
        assert ours == drf_generic(job)
        assert json.dumps(ours, sort_keys=True, default=str) == json.dumps(drf_generic(job), sort_keys=True, default=str)
        assert list(ours) == list(JobSerializer.Meta.fields)


def test_representation__lists_and_a_naive_or_missing_datetime() -> None:
    jobs = jobs_in_every_shape()
    assert JobSerializer(jobs, many=True).data == [drf_generic(job) for job in jobs]
    job = jobs[0]
    job.started_at = None
    job.completed_at = timezone.now()
    assert JobSerializer(job).data == drf_generic(job)
    assert JobSerializer(job).data["started_at"] is None and JobSerializer(job).data["completed_at"].endswith("Z")
