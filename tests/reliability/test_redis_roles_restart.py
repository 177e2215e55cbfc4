"""Each Redis role on a server of its own (CELERY_BROKER_URL, CHANNEL_LAYER_REDIS_URL, LOCKS_REDIS_URL), and
one of them restarted alone, empty, while jobs run and clients watch: nothing is lost.

- the channel layer's server: pushes in flight are lost, the daphne's subscriptions come back and resync
  from the database; jobs are not disturbed at all (no second attempt);
- the locks' server: the stage leases and the reaper's lock vanish; each running stage writes its lease
  again at its next heartbeat, a stage starting meanwhile claims its lease again after a backoff. A job
  waiting between two stages has lost the lease that said so, and the reaper may take it for lost: it
  runs again as a second attempt and completes (docs/OPERATIONS.md: give the locks' Redis persistence).
REDIS_URL points at a closed port: a client still deriving its Redis from it would fail the test.
"""
from __future__ import annotations

import httpx
import pytest

from jobs import services, states
from jobs.models import GenerationJob
from tests.factories import make_project, make_user
from tests.processes import artifacts_dir, free_port, wait_until
from tests.push_clients import PushClients
from tests.redis_ha import RedisServer

from .conftest import LIMITS, TINY_IMAGES, Stream, Watchers, assert_settled, script, token_for
from .scenario import api_client, assert_pushes_complete, create_jobs, start_stack, wait_finished, wait_running

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

JOBS = 4
ROLES = ("broker", "channels", "locks")


@pytest.fixture(scope="module")
def role_servers():
    workdir = artifacts_dir() / f"redis-roles-{free_port()}"
    servers = {role: RedisServer(workdir / role).start() for role in ROLES}
    yield servers
    for server in servers.values():
        server.stop()


def _run_jobs_through_a_restart(port: int, token: str, project_id: str, server: RedisServer, *,
                                max_attempts: int) -> None:
    """Create jobs, watch them (websocket project stream, per-job websocket and SSE), restart `server` while
    two of them run; then every job completes within `max_attempts` and every client saw every seq."""
    with api_client(port, token) as api:
        job_ids = create_jobs(api, project_id, JOBS)
    watchers = Watchers([Stream(f"ws://127.0.0.1:{port}/ws/projects/{project_id}/?token={token}", job_ids,
                                project=True)], timeout=120).start()
    clients = PushClients(port, token, job_ids, timeout=120).start()
    wait_running(job_ids, count=2, message="two jobs to be running")

    server.restart(down_s=2.0)

    wait_finished(job_ids, 90, message="every job to finish")
    done = assert_settled(job_ids, watchers)
    assert all(job.status == states.COMPLETED and job.attempts <= max_attempts for job in done.values()), {
        j: (job.status, job.attempts, job.error_message) for j, job in done.items()}
    clients.join()
    assert_pushes_complete(clients.watches, done)


def test_redis_roles__channel_layer_then_locks_server_restarted_alone_lose_nothing(processes, periodic_tasks,
                                                                                   backend, role_servers):
    # Given daphne, a worker and beat with the broker, the channel layer and the locks each on its own Redis
    env = {**LIMITS, "REDIS_URL": "redis://127.0.0.1:1/0", "CELERY_BROKER_URL": role_servers["broker"].url,
           "CHANNEL_LAYER_REDIS_URL": role_servers["channels"].url, "LOCKS_REDIS_URL": role_servers["locks"].url,
           "JOBS_CREATE_RATE": "", "SD_API_URL": backend.url}
    port = start_stack(processes, env)
    user = make_user()
    token = token_for(user)
    project = make_project(owner=user, script=script(*(f"Harbour [slow:0.4] scene {n}." for n in range(6))))
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["redis"] == "ok"

    # When the channel layer's server restarts alone, then (other jobs) the locks' server alone
    _run_jobs_through_a_restart(port, token, str(project.pk), role_servers["channels"], max_attempts=1)
    assert role_servers["locks"].client(db=0).keys("*:jobs:stages:*"), "leases live on the locks' server"
    _run_jobs_through_a_restart(port, token, str(project.pk), role_servers["locks"], max_attempts=2)

    # Then (checked in each round) every job completed (the channel layer's round on its first attempt) and
    # every client saw it all;
    # the processes rode it out, and the broker's server never saw a lease nor the locks' server a queue
    assert processes.procs["daphne"].poll() is None and processes.procs["worker"].poll() is None
    assert not role_servers["broker"].client(db=0).keys("*:jobs:*")
    assert not role_servers["locks"].client(db=0).keys("*_kombu*")
    daphne_log = processes.log("daphne")
    assert "channel layer reconnected; resyncing" in daphne_log


def test_locks_server_down_when_a_stage_starts__it_claims_again_after_a_backoff(processes, role_servers):
    # Given a worker whose locks' Redis (LOCKS_REDIS_URL) is down, the broker and the rest as usual
    locks = role_servers["locks"]
    locks.stop()
    try:
        processes.start_worker(concurrency=1, LOCKS_REDIS_URL=locks.url, JOBS_RETRY_BACKOFF_S="1")
        project = make_project(owner=make_user(), script=script("Harbour at dawn."))

        # When a job is dispatched to it, and the locks' server comes back a moment later
        job = services.job_create(project=project, job_type="image_generation", params=TINY_IMAGES)
        wait_until(lambda: "lease store unavailable" in processes.log("worker"), 30,
                   message="the worker to find the lease store unavailable")
    finally:
        locks.start()

    # Then the stage claims its lease on a later try and the job completes on its first attempt
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status in states.TERMINAL, 60, message="the job to finish")
    done = GenerationJob.objects.get(pk=job.pk)
    assert (done.status, done.attempts) == (states.COMPLETED, 1), done.error_message
