"""A job created through the REST API is picked up by a real Celery worker process and completes."""
from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ops import health_checks as health
from tests.factories import make_project, make_user
from tests.processes import wait_until


@pytest.mark.slow
def test_api_job_create__real_worker_completes_it_and_serves_its_artifacts(processes):
    # given a running worker and a user with a token
    processes.start_worker(concurrency=1)
    user = make_user()
    project = make_project(owner=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    # when a job is created through the API
    created = client.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation",
                                         "params": {"width": 128, "height": 96}}, format="json")
    assert created.status_code == 201, created.content
    job_url = created["Location"]

    # then the worker runs it to completion, visible through the API
    def finished() -> dict | None:
        body = client.get(job_url).json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    try:
        job = wait_until(finished, timeout=120, interval=0.5, message="the job to finish")
    except AssertionError:
        raise AssertionError(f"job never finished; worker log:\n{processes.log('worker')[-4000:]}") from None
    assert job["status"] == "completed", (job, processes.log("worker")[-4000:])
    assert job["progress"] == 100 and job["celery_task_id"] and job["started_at"]
    events = client.get(f"{job_url}events/").json()
    assert [e["seq"] for e in events] == list(range(1, job["seq"] + 1))

    # and every artifact URL in the result serves the file to its owner, with its content type
    artifacts = job["result"]["artifacts"]
    assert any(a["kind"] == "image" for a in artifacts)
    for artifact in artifacts:
        response = client.get(artifact["url"])
        assert response.status_code == 200, artifact
        assert response["Content-Type"] == artifact["content_type"]
        assert int(response["Content-Length"]) == artifact["bytes"]
        stranger = APIClient()
        stranger.force_authenticate(make_user())
        assert stranger.get(artifact["url"]).status_code == 404

    # and /healthz counts the live worker
    health.reset_workers_cache()
    body = client.get("/healthz").json()
    assert body["workers"] >= 1 and body["database"] == "ok" and body["redis"] == "ok"
