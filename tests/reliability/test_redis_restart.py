"""Redis stopped and restarted (empty) while jobs run and clients watch: no job is lost, clients converge.

Every process of this test (daphne, worker, beat) uses a private redis-server the test started, never the
machine's: stopping that one cannot disturb other test runs. It restarts without its data (no persistence),
so queued messages, leases and channel-layer subscriptions are all gone and must be rebuilt.
"""
from __future__ import annotations

import time

import httpx
import pytest

from devtools.embedded_redis import free_port, start_embedded_redis
from jobs import states
from jobs.models import GenerationJob
from tests.factories import make_project, make_user
from tests.processes import artifacts_dir, wait_until

from .conftest import LIMITS, TINY_IMAGES, Stream, Watchers, assert_settled, script, token_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

JOBS = 6


@pytest.fixture
def private_redis():
    """A redis-server on a port of its own that the test may stop and start again (same port)."""
    port = free_port()
    workdir = artifacts_dir() / f"redis-private-{port}"
    server = {"proc": start_embedded_redis(workdir, port=port)[0]}

    def stop() -> None:
        server["proc"].terminate()
        server["proc"].wait(10)

    def start() -> None:
        server["proc"] = start_embedded_redis(workdir, port=port)[0]

    yield {"url": f"redis://127.0.0.1:{port}/0", "stop": stop, "start": start}
    if server["proc"].poll() is None:
        stop()


def test_redis_restart__jobs_finish_and_watchers_converge(processes, periodic_tasks, backend, private_redis):
    # Given daphne, a worker and beat on the private Redis, and jobs created through the API and watched
    env = {**LIMITS, "REDIS_URL": private_redis["url"], "JOBS_MAX_ATTEMPTS": "10",
           "JOBS_QUEUED_REDISPATCH_AFTER_S": "5", "JOBS_CREATE_RATE": "", "SD_API_URL": backend.url}
    port = processes.start_daphne(wait=False, **env)
    processes.start_worker(concurrency=2, wait=False, **env)
    processes.start_beat(**env)
    processes.wait_ready()
    user = make_user()
    token = token_for(user)
    project = make_project(owner=user, script=script(*(f"Harbour [slow:0.5] scene {n}." for n in range(4))))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                      timeout=20) as api:
        created = [api.post("/api/jobs/", json={"project_id": str(project.pk), "job_type": "image_generation",
                                                "params": TINY_IMAGES}) for _ in range(JOBS)]
    assert [r.status_code for r in created] == [201] * JOBS, [r.text for r in created]
    job_ids = [r.json()["id"] for r in created]
    streams = [Stream(f"ws://127.0.0.1:{port}/ws/jobs/{job_id}/?token={token}", [job_id]) for job_id in job_ids]
    streams.append(Stream(f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/?token={token}", job_ids, project=True))
    watchers = Watchers(streams, timeout=150).start()

    # When Redis goes away while some jobs run and others wait in its queues, and comes back empty
    wait_until(lambda: GenerationJob.objects.filter(pk__in=job_ids, status=states.PROCESSING, progress__gt=0).exists(),
               60, message="a job to be running")
    private_redis["stop"]()
    time.sleep(3)
    private_redis["start"]()

    # Then every job still completes (lost messages re-dispatched by the reaper) and every client converges
    wait_until(lambda: not GenerationJob.objects.filter(pk__in=job_ids).exclude(status__in=states.TERMINAL).exists(),
               120, interval=0.5, message="every job to finish after the Redis restart")
    done = assert_settled(job_ids, watchers)
    assert {job.status for job in done.values()} == {states.COMPLETED}, {
        j: (job.status, job.error_message) for j, job in done.items()}
    assert processes.procs["daphne"].poll() is None and processes.procs["worker"].poll() is None
    reaper_log = [line for line in processes.log("worker").splitlines() if "jobs.reaper reaper: {" in line]
    assert any("'redispatched': ['" in line or "'requeued': ['" in line for line in reaper_log), (
        "the messages Redis lost were replaced by the reaper")
