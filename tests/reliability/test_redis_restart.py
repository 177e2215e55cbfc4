"""Redis stopped and restarted (empty) while jobs run and clients watch: no job is lost, clients converge.

Every process of this test (daphne, worker, beat) uses a private redis-server the test started, never the
machine's: stopping that one cannot disturb other test runs. It restarts without its data (no persistence),
so queued messages, leases and channel-layer subscriptions are all gone and must be rebuilt.
"""
from __future__ import annotations

import pytest

from tests.factories import make_project, make_user

from .conftest import LIMITS, Stream, Watchers, assert_settled, script, token_for
from .scenario import api_client, assert_all_completed, create_jobs, start_stack, wait_finished, wait_running

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

JOBS = 6


def test_redis_restart__jobs_finish_and_watchers_converge(processes, periodic_tasks, backend, private_redis):
    # Given daphne, a worker and beat on the private Redis, and jobs created through the API and watched
    env = {**LIMITS, "REDIS_URL": private_redis.url, "JOBS_MAX_ATTEMPTS": "10",
           "JOBS_QUEUED_REDISPATCH_AFTER_S": "5", "JOBS_CREATE_RATE": "", "SD_API_URL": backend.url}
    port = start_stack(processes, env)
    user = make_user()
    token = token_for(user)
    project = make_project(owner=user, script=script(*(f"Harbour [slow:0.5] scene {n}." for n in range(4))))
    with api_client(port, token) as api:
        job_ids = create_jobs(api, str(project.pk), JOBS)
    streams = [Stream(f"ws://127.0.0.1:{port}/ws/jobs/{job_id}/?token={token}", [job_id]) for job_id in job_ids]
    streams.append(Stream(f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/?token={token}", job_ids, project=True))
    watchers = Watchers(streams, timeout=150).start()

    # When Redis goes away while some jobs run and others wait in its queues, and comes back empty
    wait_running(job_ids, message="a job to be running")
    private_redis.restart(down_s=3)

    # Then every job still completes (lost messages re-dispatched by the reaper) and every client converges
    wait_finished(job_ids, 120, message="every job to finish after the Redis restart")
    assert_all_completed(assert_settled(job_ids, watchers))
    assert processes.procs["daphne"].poll() is None and processes.procs["worker"].poll() is None
    reaper_log = [line for line in processes.log("worker").splitlines() if "jobs.reaper reaper: {" in line]
    assert any("'redispatched': ['" in line or "'requeued': ['" in line for line in reaper_log), (
        "the messages Redis lost were replaced by the reaper")
