"""200 jobs created at once by 20 concurrent API clients while the worker's pool processes keep restarting."""
from __future__ import annotations

import threading

import httpx
import pytest

from jobs import states
from jobs.models import GenerationJob
from tests.factories import make_project, make_user
from tests.processes import wait_until

from .conftest import LIMITS, TINY_IMAGES, Stream, Watchers, assert_settled, script, token_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

CLIENTS, JOBS_EACH = 20, 10


def test_api_load__200_jobs_from_20_clients_all_complete_while_pool_processes_recycle(processes, periodic_tasks):
    # Given daphne without the job-creation throttle, a worker whose pool processes exit every 3 tasks,
    # and 20 users, each watching their project's stream
    # The backlog is long: a job waits far longer than STALE_AFTER_S between its two stages.
    env = {**LIMITS, "JOBS_CREATE_RATE": "", "JOBS_QUEUED_REDISPATCH_AFTER_S": "300"}
    port = processes.start_daphne(wait=False, **env)
    processes.start_worker(concurrency=2, extra_args=["--max-tasks-per-child", "3"], wait=False, **env)
    processes.start_beat(**env)
    processes.wait_ready()
    owners = []
    for _ in range(CLIENTS):
        user = make_user()
        owners.append((token_for(user), make_project(owner=user, script=script("One small scene."))))
    streams = [Stream(f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/?token={token}", None, project=True)
               for token, project in owners]
    watchers = Watchers(streams, timeout=240).start()

    # When 20 clients each create 10 jobs at the same moment
    start = threading.Barrier(CLIENTS)
    answers: list[list[httpx.Response]] = [[] for _ in range(CLIENTS)]

    def client(n: int) -> None:
        token, project = owners[n]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                          timeout=60) as api:
            start.wait(30)
            for _ in range(JOBS_EACH):
                answers[n].append(api.post("/api/jobs/", json={
                    "project_id": str(project.pk), "job_type": "image_generation", "params": TINY_IMAGES}))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = [r.status_code for rs in answers for r in rs]
    assert statuses == [201] * CLIENTS * JOBS_EACH, [r.text for rs in answers for r in rs if r.status_code != 201][:3]
    for stream, responses in zip(streams, answers):
        stream.job_ids = [r.json()["id"] for r in responses]
    job_ids = [job_id for stream in streams for job_id in stream.job_ids]

    # Then all 200 complete, exactly once each, and every client saw each of its jobs finish
    wait_until(lambda: not GenerationJob.objects.filter(pk__in=job_ids).exclude(status__in=states.TERMINAL).exists(),
               200, interval=0.25, message="all 200 jobs to finish")
    done = assert_settled(job_ids, watchers)
    assert len(done) == CLIENTS * JOBS_EACH
    assert {job.status for job in done.values()} == {states.COMPLETED}, {
        j: (job.status, job.error_message) for j, job in done.items() if job.status != states.COMPLETED}
    # ... run by many short-lived pool processes (a child exits after 3 tasks; each job has 2)
    assert len({job.worker for job in done.values()}) > CLIENTS * JOBS_EACH // 3
