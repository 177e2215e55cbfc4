"""The soak: "30 minutes compressed into 3" of a loaded system with every fault at once, then the invariants.

500 jobs from 20 users (soak_users.py: random but seeded creates, cancels, retries and script edits through
the API) while a worker is SIGKILLed every 20 s, the artifact store (S3, moto_server) is away once, Redis
restarts empty once, a webhook receiver is down about half the time, and the hardening step's abuse runs
against the same web process (soak_abuse.py). Every client watches over websockets and SSE
(soak_watchers.py). Then: every job terminal with the status its user's accepted actions call for, its events
1..N without gaps, every client saw each job's final status (and, where it replays, every event from its
first), no user over JOBS_MAX_RUNNING_PER_USER at any sample (soak_running.py), no object half-written
(soak_objects.py), every webhook delivered, and every abuse refused as it is alone.

Every process uses a private Redis the test restarts (conftest.private_redis), a MEDIA_ROOT of its own (only
the bucket is shared), and short reaper/heartbeat limits (conftest.LIMITS); images come from the fake Stable
Diffusion backend, one scene per script slow enough that kills and cancels land mid-stage.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import Counter

import httpx
import psutil
import pytest
from django.core.management import call_command
from django.db.models import Count

from jobs import queues, states
from jobs.models import GenerationJob
from tests.e2e.webhook_receiver import WebhookReceiver
from tests.factories import make_project, make_user
from tests.processes import wait_until
from webhooks.models import WebhookDelivery

from .conftest import LIMITS, assert_settled, token_for
from .soak_abuse import Abuser, AbuseUnderLoad
from .soak_faults import FlappingReceiver, RedisRestart, StoreOutage, WorkerPool
from .soak_objects import listed_artifact_problems, served_artifact_problems, stored_object_problems
from .soak_running import RunningSampler
from .soak_users import TINY_IMAGES, SoakUser, UserThread, plan, project_script
from .soak_watchers import SSE_JOB, SSE_PROJECT, WS_JOB, WS_PROJECT, Watchers

# One line per request from 20 users would drown the test's output.
logging.getLogger("httpx").setLevel(logging.WARNING)

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(1200)]

SEED = 19
USERS, JOBS_EACH = 20, 25
MEAN_THINK_S = 4.0  # a user's pause before each create: 25 jobs in about 100 s when the system keeps up
OUTSTANDING = 3  # a user creates the next job only while fewer of theirs are unfinished
EDITS_EACH = 3
KILL_EVERY_S = 20.0
ABUSE_AT_S = 10.0
STORE_OUTAGE_AT_S = 45.0
REDIS_RESTART_AT_S = 75.0  # or once the abuse is over, if later
MAX_RUNNING_PER_USER = 2
# From the first create until every job must be terminal: about 4 minutes on a quiet 2-core machine, 5 with
# the load average near 17, much longer near 30 (the soak paces itself to what the machine gives it).
SOAK_LIMIT_S = 900.0
JOB_QUEUES = ",".join(name for name in queues.ALL if name != queues.WEBHOOKS)

# The webhook retry schedule compressed as the rest: 0.5 s, 1 s, 2 s, 2 s, ... for up to 40 attempts, and
# the sweep that finds deliveries whose task Redis lost every 2 s.
FAST_WEBHOOKS = {"WEBHOOKS_ALLOW_PRIVATE": "1", "WEBHOOKS_RETRY_BASE_S": "0.5", "WEBHOOKS_RETRY_FACTOR": "2",
                 "WEBHOOKS_RETRY_MAX_S": "2", "WEBHOOKS_TIMEOUT_S": "2", "WEBHOOKS_MAX_ATTEMPTS": "40",
                 "WEBHOOKS_SWEEP_INTERVAL_S": "2"}


@pytest.fixture
def soak_periodic_tasks(settings):
    """The reaper every second and the webhook sweep every 2 s, created as `make run` creates them."""
    settings.JOBS = {**settings.JOBS, "REAPER_INTERVAL_S": 1.0}
    settings.WEBHOOKS = {**settings.WEBHOOKS, "SWEEP_INTERVAL_S": 2.0}
    call_command("setup_periodic_tasks", verbosity=0)


def soak_env(redis_url: str, backend_url: str, s3) -> dict[str, str]:
    return {**LIMITS, **FAST_WEBHOOKS, "REDIS_URL": redis_url, "SD_API_URL": backend_url,
            # Artifacts in the bucket; a store that is down is noticed within a second (the stage retries).
            **s3.env(ARTIFACT_STORE_CONNECT_TIMEOUT_S="1", ARTIFACT_STORE_READ_TIMEOUT_S="5",
                     ARTIFACT_STORE_MAX_ATTEMPTS="1"),
            "JOBS_MAX_RUNNING_PER_USER": str(MAX_RUNNING_PER_USER),
            # A worker may lose a job to a kill many times over, and a stage retry through the store's outage:
            # none may fail for it.
            "JOBS_MAX_ATTEMPTS": "20", "JOBS_RETRY_MAX": "10",
            # Long enough that a job waiting behind the backlog is not sent twice (nor, between its stages,
            # taken for lost: with a backlog longer than this, requeues feed the backlog); short enough that
            # the messages the Redis restart and the kills lost are replaced within the soak.
            "JOBS_QUEUED_REDISPATCH_AFTER_S": "30",
            # A quiet websocket re-reads its jobs' seqs (a push lost while Redis was away); SSE keep-alives.
            "WS_QUIET_CHECK_S": "3", "SSE_KEEPALIVE_S": "5"}


def test_soak__500_jobs_20_users_faults_and_abuse_every_job_settles(
        processes, soak_periodic_tasks, backend, private_redis, s3, settings, tmp_path):
    rng = random.Random(SEED)
    receiver = WebhookReceiver().start()
    env = soak_env(private_redis.url, backend.url, s3)
    # Every process a machine of its own: nothing shared but the bucket, the database and Redis.
    port = processes.start_daphne(wait=False, **env, MEDIA_ROOT=str(tmp_path / "web"))
    pool = WorkerPool(processes, env, JOB_QUEUES, machines=tmp_path)
    pool.start()
    processes.start_beat(**env, MEDIA_ROOT=str(tmp_path / "beat"))
    processes.wait_ready()
    base_url = f"http://127.0.0.1:{port}"

    # Given 20 users, each with a project watched over a websocket and an SSE stream
    watchers = Watchers(port, deadline_s=SOAK_LIMIT_S + 120)
    users: list[SoakUser] = []
    project_clients: dict[int, list] = {}
    for n in range(USERS):
        owner = make_user(password=None)  # no password hashing: they use tokens
        user_rng = random.Random(SEED * 1000 + n)
        project = make_project(owner=owner, script=project_script(n, 0, user_rng))
        users.append(SoakUser(n, token_for(owner), str(project.pk), receiver.url if n % 2 == 0 else None, user_rng))
        project_clients[n] = [watchers.watch(kind, str(project.pk), users[-1].token, job_ids=set())
                              for kind in (WS_PROJECT, SSE_PROJECT)]

    def on_created(user: SoakUser, index: int, job_id: str) -> None:
        for client in project_clients[user.n]:
            client.job_ids = client.job_ids | {job_id}  # a new set: the watchers' loop may be iterating the old
        if index % 12 == 3:
            watchers.watch(WS_JOB, job_id, user.token)
        elif index % 12 == 7:
            watchers.watch(SSE_JOB, job_id, user.token)

    # When they act on their seeded plans while workers die, Redis restarts, webhooks flap and abusers strike
    start_at = time.monotonic()
    threads = [UserThread(user, base_url, plan(user.rng, JOBS_EACH, MEAN_THINK_S, EDITS_EACH), OUTSTANDING,
                          project_clients[user.n][0].unfinished, on_created, watchers.reopen) for user in users]
    for thread in threads:
        thread.start()
    flapper = FlappingReceiver(receiver, random.Random(rng.random()))
    flapper.start()
    redis_restart = RedisRestart(private_redis)
    store_outage = StoreOutage(s3.proxy)
    running = RunningSampler()
    running.start()
    abuser = abuse = None
    next_kill, next_report = KILL_EVERY_S, 15.0

    def all_job_ids() -> list[str]:
        return [job_id for user in users for job_id in user.job_ids] + ([abuser.job_id] if abuser else [])

    def unfinished() -> int:
        return GenerationJob.objects.filter(pk__in=all_job_ids()).exclude(status__in=states.TERMINAL).count()

    while True:
        elapsed = time.monotonic() - start_at
        if abuse is None and elapsed >= ABUSE_AT_S:
            abuser = make_abuser(port, users, settings)
            abuse = AbuseUnderLoad(abuser)
            abuse.start()
        # After the abuse: a websocket or SSE request that arrives while Redis is down is cut (reported),
        # which would fail the abuse probes' own counts for reasons that are not theirs.
        if not redis_restart.restarts and elapsed >= REDIS_RESTART_AT_S and abuse and not abuse.is_alive():
            redis_restart()
            print(f"soak: Redis restarted at {elapsed:.0f} s; abuse probes (start, end s): "
                  f"{ {k: (round(a - start_at), round(b - start_at)) for k, (a, b) in abuser.spans.items()} }")
        if not store_outage.outages and elapsed >= STORE_OUTAGE_AT_S:
            store_outage()
        if elapsed >= next_kill and pool.kill_next():
            next_kill = elapsed + KILL_EVERY_S
        if not any(thread.is_alive() for thread in threads) and abuse is not None and unfinished() == 0:
            break
        assert elapsed < SOAK_LIMIT_S, f"{unfinished()} jobs unfinished after {SOAK_LIMIT_S} s"
        if elapsed >= next_report:
            report_progress(elapsed, all_job_ids())
            next_report += 15
        time.sleep(0.5)
    phases: dict[str, float] = {}  # seconds from the start at the end of each phase

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - start_at
        print(f"soak phase {name} done at {phases[name]:.0f} s", flush=True)

    phase("soak")
    flapper.settle()
    running.stop()
    abuse.join(120)
    phase("abuse")

    # Then every user's requests were answered (no 5xx, no cut connection) and every job is terminal with
    # its events numbered 1..N, with the status its user's accepted actions call for
    for thread in threads:
        assert thread.failure is None, f"user {thread.user.n}: {thread.failure!r}"
    assert [error for user in users for error in user.server_errors] == []
    job_ids = all_job_ids()
    assert len(job_ids) == USERS * JOBS_EACH + 1
    done = assert_settled(job_ids)
    for user in users:
        for job_id in user.job_ids:
            job = done[job_id]
            expected = user.expected_status(job_id) or states.COMPLETED
            assert job.status == expected, (job_id, job.status, job.error_message, user.answers.get(job_id))

    # ... no user ever had more jobs running than the limit
    assert running.samples > 100 and max(running.highest.values()) <= MAX_RUNNING_PER_USER, (
        running.samples, running.highest)

    # ... every webhook was delivered: each delivery row 2xx, each received, each job's last completed
    # delivery carrying its final status
    wait_until(lambda: not WebhookDelivery.objects.filter(job_id__in=job_ids, state=WebhookDelivery.PENDING).exists(),
               90, interval=0.5, message="every webhook delivery to be sent")
    assert_webhooks_delivered(users, done, receiver)
    phase("webhooks")

    # ... every watching client saw every job's final status
    expected = {job_id: (job.status, job.seq) for job_id, job in done.items()}
    watchers.finish(expected, timeout=60)
    assert_watchers_saw_the_end(watchers, expected)
    phase("watchers")

    # ... no object is half-written: every object stored for any attempt is whole, each completed job's
    # artifacts are stored at their declared size, and (two users' jobs) served as stored
    # (the bucket's proxy lives in this process and keeps every connection it ever carried until it stops:
    # hundreds of workers' connections over the soak; bounced here, or the reads run out of file handles)
    s3.proxy.stop()
    s3.proxy.start()
    objects, broken = stored_object_problems(job_ids)
    assert objects > len(done) and broken == [], broken[:10]
    completed = [job for job in done.values() if job.status == states.COMPLETED]
    assert listed_artifact_problems(completed) == []
    for user in users[:2]:
        theirs = [done[job_id] for job_id in user.job_ids if done[job_id].status == states.COMPLETED]
        assert theirs and served_artifact_problems(base_url, user.token, theirs) == []
    phase("artifacts")

    # ... every abuse was refused as it is alone, and the web process stayed up throughout
    assert abuse.abuser.failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in abuse.abuser.failures.items())
    assert len(abuse.abuser.passed) == 9, abuse.abuser.passed
    # (each probe ended while the users were still creating jobs: under load, not after it)
    last_create = max(user.created_at[-1] for user in users)
    late = {name: round(end - last_create) for name, (_, end) in abuse.abuser.spans.items() if end > last_create}
    assert late == {}, f"probes that ended after the last create (s): {late}"
    assert processes.procs["daphne"].poll() is None

    # ... and the faults really happened: kills, lost attempts requeued, the restart, webhook retries
    assert len(pool.killed) >= 6 and redis_restart.restarts == 1 and store_outage.outages == 1, (
        pool.killed, redis_restart.restarts, store_outage.outages)
    assert flapper.outages >= 10, flapper.outages
    assert sum(job.lost_count for job in done.values()) > 0
    assert WebhookDelivery.objects.filter(job_id__in=job_ids, attempt__gt=1).exists()
    cancelled = sum(job.status == states.CANCELLED for job in done.values())
    retried = sum(job.attempts > 1 for job in done.values())
    print(f"soak: {len(job_ids)} jobs; phases ended at (s) { {k: round(v) for k, v in phases.items()} }; "
          f"{cancelled} cancelled, {retried} with more than one attempt; workers killed {len(pool.killed)}; "
          f"webhook receiver outages {flapper.outages}; "
          f"users by most jobs running at once {dict(Counter(running.highest.values()))}; "
          f"throttled user calls {sum(u.throttled for u in users)}; clients {len(watchers.clients)}; "
          f"CPU s: test process {cpu_s(os.getpid()):.0f}, web {cpu_s(processes.procs['daphne'].pid):.0f}")


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def report_progress(elapsed: float, job_ids: list[str]) -> None:
    """One line every 15 s, so a slow run shows where it stood (pytest -s, or the captured output)."""
    counts = dict(GenerationJob.objects.filter(pk__in=job_ids).values_list("status").annotate(n=Count("pk")))
    print(f"soak t={elapsed:.0f}s load={os.getloadavg()[0]:.1f} {counts}", flush=True)


def make_abuser(port: int, users: list[SoakUser], settings) -> Abuser:
    """The abusers (one with a job of their own made through the API) and the soak user they aim at."""
    owner = make_user(password=None)
    token = token_for(owner)
    project = make_project(owner=owner)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Token {token}"}) as api:
        created = api.post("/api/jobs/", json={"project_id": str(project.pk), "job_type": "image_generation",
                                               "params": TINY_IMAGES})
    assert created.status_code == 201, created.text[:300]
    victim = next(user for user in users if user.job_ids)
    honest_password = "honest-password-19"
    return Abuser(port=port, token=token, project_id=str(project.pk), job_id=created.json()["id"],
                  throttled_token=token_for(make_user(password=None)),
                  victim_project_id=victim.project_id, victim_job_id=victim.job_ids[0],
                  login_username=make_user().username, honest_username=make_user(password=honest_password).username,
                  honest_password=honest_password, sockets_per_user=settings.WEBSOCKETS["SOCKETS_PER_USER"],
                  sse_streams_per_user=settings.SSE_STREAMS_PER_USER)


def assert_webhooks_delivered(users: list[SoakUser], done: dict, receiver: WebhookReceiver) -> None:
    received_ids = {request.headers["webhook-id"] for request in receiver.snapshot()}
    for user in users:
        for job_id in user.job_ids:
            rows = list(WebhookDelivery.objects.filter(job_id=job_id).order_by("seq"))
            if user.webhook_url is None:
                assert rows == []
                continue
            assert rows and all(row.state == WebhookDelivery.DELIVERED and 200 <= row.status_code < 300
                                for row in rows), [(row.event, row.state, row.error) for row in rows]
            assert {row.webhook_id for row in rows} <= received_ids
            last = json.loads([row for row in rows if row.event == "completed"][-1].body)
            assert (last["type"], last["data"]["status"], last["data"]["seq"]) == (
                "job.completed", done[job_id].status, done[job_id].seq), (job_id, last)


def assert_watchers_saw_the_end(watchers: Watchers, expected: dict[str, tuple[str, int]]) -> None:
    problems = []
    for client in watchers.clients:
        server_errors = [e for e in client.errors if e.startswith("server error")]
        if server_errors:
            problems.append((client.kind, client.url, server_errors[:3]))
        for job_id in client.job_ids:
            seen = client.seen.get(job_id)
            latest = seen.latest if seen else None
            if latest is None or (latest["status"], latest["seq"]) != expected[job_id]:
                problems.append((client.kind, client.url, job_id, latest and (latest["status"], latest["seq"]),
                                 expected[job_id], client.errors[-3:]))
                continue
            # An SSE project stream reconnects without replay (CONTRACT.md): it owes only the final status.
            if client.kind != SSE_PROJECT:
                missing = set(range(seen.first_seq, expected[job_id][1] + 1)) - seen.seqs
                if missing:
                    problems.append((client.kind, client.url, job_id, "missed seqs", sorted(missing)[:10]))
    assert problems == [], problems[:10]
