"""Idempotency-Key under concurrency: duplicates racing through two real daphne processes create one job."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from rest_framework.authtoken.models import Token

from jobs.models import GenerationJob
from tests.factories import make_project, make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_idempotency__20_concurrent_duplicates_across_two_web_processes_create_one_job(processes) -> None:
    # given two web processes and a user with a project
    ports = [processes.start_daphne("web-a", wait=False), processes.start_daphne("web-b", wait=False)]
    processes.wait_ready()
    user = make_user()
    project = make_project(owner=user)
    token = Token.objects.create(user=user).key
    body = {"project_id": str(project.pk), "job_type": "image_generation"}
    start = threading.Barrier(20)

    def create(index: int) -> httpx.Response:
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[index % 2]}", timeout=30) as client:
            start.wait(60)
            return client.post("/api/jobs/", json=body, headers={
                "Authorization": f"Token {token}", "Idempotency-Key": "race-1"})

    # when 20 clients send the same create with the same key at the same moment, half to each process
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(create, range(20)))

    # then exactly one job exists; every answer is its 201 (first or replayed) or a 409 "still in flight"
    assert GenerationJob.objects.filter(project=project).count() == 1
    job = GenerationJob.objects.get(project=project)
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert created and {r.json()["id"] for r in created} == {str(job.pk)}
    assert len({r.content for r in created}) == 1, "every 201 carries the same body"
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in created) == 1
    # and once the race is over, a retry through either process replays the first response
    for port in ports:
        again = httpx.post(f"http://127.0.0.1:{port}/api/jobs/", json=body, timeout=30,
                           headers={"Authorization": f"Token {token}", "Idempotency-Key": "race-1"})
        assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (
            201, created[0].content, "true")
