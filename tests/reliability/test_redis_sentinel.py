"""Redis Sentinel: the master SIGKILLed while jobs run and clients watch; everything follows the new master.

One sentinel set for the module (tests/redis_ha.py: a master, a replica and three sentinels, down-after
1 s, a password everywhere). Every process (daphne, worker, beat) gets only REDIS_SENTINELS,
REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD: broker, channel layer, locks and cache all find the master
through the sentinels, and nothing is restarted when it changes.
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

import pytest
from celery import Celery
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from flower.utils.broker import Broker
from kombu import Queue

from config import redis_roles
from jobs.models import JobEvent
from tests.factories import make_project, make_user
from tests.processes import artifacts_dir, free_port, wait_until
from tests.push_clients import PushClients
from tests.redis_ha import SentinelSet

from .conftest import LIMITS, Stream, Watchers, assert_settled, script, token_for
from .scenario import (api_client, assert_all_completed, assert_pushes_complete, create_jobs, start_stack,
                       wait_finished, wait_running)

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

JOBS = 4  # running or queued when the master dies
LATER_JOBS = 2  # created after the failover


@pytest.fixture(scope="module")
def sentinel_set():
    ha = SentinelSet(artifacts_dir() / f"sentinel-{free_port()}").start()
    yield ha
    ha.stop()


def _pushed_after(job_ids: list[str], moment: float) -> dict[tuple[str, int], bool]:
    """(job, seq) -> whether that event was committed after the wall-clock `moment`."""
    rows = JobEvent.objects.filter(job_id__in=job_ids).values_list("job_id", "seq", "created_at")
    cut = datetime.fromtimestamp(moment, tz=timezone.utc)
    return {(str(job), seq): created > cut for job, seq, created in rows}


def test_flower__reads_queue_lengths_through_the_sentinels(sentinel_set):
    # Given the broker settings a deployment with REDIS_SENTINELS gets, and a message in a job queue
    url, options = redis_roles.celery_broker(redis_roles.roles_from_env(sentinel_set.env()).broker, None)
    app = Celery(broker=url, set_as_current=False)  # the tests that follow dispatch with config.celery
    app.conf.broker_transport_options = {**options, "global_keyprefix": f"flower-{free_port()}:"}
    queue = Queue("image_generation", routing_key="image_generation")
    with app.connection() as connection, connection.Producer() as producer:
        producer.publish({"probe": 1}, routing_key=queue.name, declare=[queue])

    # When Flower builds its broker client as it does (the app's URI and transport options)
    broker = Broker(app.connection().as_uri(include_password=True),
                    broker_options=app.conf.broker_transport_options)

    # Then it finds the master through the sentinels and counts the message
    assert asyncio.run(broker.queues([queue.name])) == [{"name": queue.name, "messages": 1}]


def test_sentinel_failover__jobs_finish_watchers_converge_new_jobs_complete(processes, periodic_tasks, backend,
                                                                            sentinel_set):
    # Given daphne, a worker and beat that know only the sentinels, and jobs watched over websockets and SSE
    env = {**LIMITS, **sentinel_set.env(), "REDIS_URL": "redis://127.0.0.1:1/0",  # a REDIS_URL nobody may use
           "JOBS_MAX_ATTEMPTS": "10", "JOBS_QUEUED_REDISPATCH_AFTER_S": "5", "JOBS_CREATE_RATE": "100/min",
           "SD_API_URL": backend.url, "METRICS_TOKEN": "sentinel-metrics"}
    port = start_stack(processes, env)
    user = make_user()
    token = token_for(user)
    project = make_project(owner=user, script=script(*(f"Harbour [slow:0.4] scene {n}." for n in range(8))))
    api = api_client(port, token)
    assert api.get("/healthz").json()["redis"] == "ok"  # every role's master found through the sentinels
    job_ids = create_jobs(api, str(project.pk), JOBS)
    project_url = f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/?token={token}"
    watchers = Watchers([Stream(project_url, job_ids, project=True)], timeout=150).start()
    clients = PushClients(port, token, job_ids, timeout=150).start()
    wait_running(job_ids, count=2, message="two jobs to be running")
    master = sentinel_set.current_master()
    # Each role's keys are on the master: the broker's queues, the channel layer's groups are pub/sub, the
    # leases of the running stages and the throttle's counters
    db = lambda n: master.client(db=n)  # noqa: E731
    assert db(0).keys("*_kombu.binding.*") and db(2).keys("*:jobs:stages:*") and db(2).keys("*:cache:*")

    # When the master is SIGKILLed, and a job is created before the sentinels have named a new master
    old, killed_at = sentinel_set.kill_master()
    killed_wall = time.time()
    during_ids = create_jobs(api, str(project.pk), 1)  # answered at once; dispatched now or by the reaper
    create_during_s = time.monotonic() - killed_at
    new = sentinel_set.wait_failover(old)
    failover_s = time.monotonic() - killed_at
    assert create_during_s < failover_s, "the job was not created during the failover"

    # Then /healthz answers ok again from the new master, and jobs created now complete too
    wait_until(lambda: api.get("/healthz").json()["redis"] == "ok", 30, message="/healthz to find the new master")
    scrape = api.get("/metrics", headers={"Authorization": "Bearer sentinel-metrics"}).text
    assert 'jobs_metrics_source_up{source="redis"} 1.0' in scrape  # queue depths read from the new master
    later_ids = during_ids + create_jobs(api, str(project.pk), LATER_JOBS)
    api.close()
    later_clients = PushClients(port, token, later_ids, timeout=120).start()
    later_watchers = Watchers([Stream(project_url, later_ids, project=True)], timeout=120).start()
    every = job_ids + later_ids
    wait_finished(every, 120, message="every job to finish after the failover")
    done = assert_settled(job_ids, watchers) | assert_settled(later_ids, later_watchers)
    assert_all_completed(done)
    for pushes in (clients, later_clients):
        pushes.join()
        assert_pushes_complete(pushes.watches, done, status=True)
    assert processes.procs["daphne"].poll() is None and processes.procs["worker"].poll() is None
    assert "channel layer reconnected; resyncing" in processes.log("daphne")  # patches/ with sentinel hosts
    # The later jobs' stage leases and job-create throttle entries were written to the new master
    assert any(new.client(db=2).keys(f"*:jobs:stages:{job_id}:*") for job_id in later_ids)
    throttle = RedisCache(f"redis://:{sentinel_set.password}@127.0.0.1:{new.port}/2",
                          {"KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"]})
    assert max(throttle.get(f"throttle_job_create_{user.pk}")) > killed_wall

    # Report: from the kill to the first push of an event committed after it, per client
    committed_after = _pushed_after(job_ids, killed_wall)
    firsts = {}
    for watch in clients.watches:
        new_pushes = [at for at, m in watch.arrivals if at > killed_at and committed_after.get((watch.job_id, m["seq"]))]
        if new_pushes:
            firsts[f"{watch.kind}:{watch.job_id[:8]}"] = round(new_pushes[0] - killed_at, 2)
    report = {"failover_s": round(failover_s, 2), "create_during_failover_s": round(create_during_s, 2),
              "kill_to_first_new_push_s": firsts,
              "longest_silence_s": round(max(w.longest_silence(killed_at) for w in clients.watches), 2),
              "new_master_port": new.port}
    (artifacts_dir() / "sentinel-failover.json").write_text(json.dumps(report, indent=2))
    print(f"sentinel failover: {report}")
    assert firsts, "no client received a push of an event committed after the kill"


def test_sentinel_master_hangs__subscriptions_leave_the_silent_master_and_watchers_converge(
        processes, periodic_tasks, backend, sentinel_set):
    # Given a sentinel set that can fail over (again), daphne and a worker, jobs watched over websockets and SSE
    sentinel_set.heal()
    env = {**LIMITS, **sentinel_set.env(), "REDIS_URL": "redis://127.0.0.1:1/0", "JOBS_MAX_ATTEMPTS": "10",
           "JOBS_QUEUED_REDISPATCH_AFTER_S": "5", "JOBS_CREATE_RATE": "", "SD_API_URL": backend.url}
    port = start_stack(processes, env)
    user = make_user()
    token = token_for(user)
    project = make_project(owner=user, script=script(*(f"Harbour [slow:0.4] scene {n}." for n in range(10))))
    with api_client(port, token) as api:
        job_ids = create_jobs(api, str(project.pk), 2)
    clients = PushClients(port, token, job_ids, timeout=120).start()
    wait_running(job_ids, count=2, exactly=True, message="both jobs to be running")

    # When the master stops answering without closing a connection (SIGSTOP: a hung process, a lost host)
    frozen, frozen_at = sentinel_set.freeze_master()
    try:
        sentinel_set.wait_failover(frozen)

        # Then the jobs finish, and every client sees every seq and the final status without reconnecting:
        # daphne's subscriptions gave up the silent connection (PING unanswered) and moved to the new master
        wait_finished(job_ids, 90, message="both jobs to finish")
        done = assert_settled(job_ids)
        assert_all_completed(done)
        clients.join()
    finally:
        sentinel_set.thaw(frozen)
    assert_pushes_complete(clients.watches, done)
    assert all(watch.connects == 1 for watch in clients.watches), [(w.kind, w.errors) for w in clients.watches]
    assert "no answer to PING" in processes.log("daphne")
    print(f"sentinel master hung: longest silence {max(w.longest_silence(frozen_at) for w in clients.watches):.2f} s")
