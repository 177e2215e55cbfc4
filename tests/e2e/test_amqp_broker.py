"""Jobs through RabbitMQ (an amqp:// CELERY_BROKER_URL) on a vhost of this module's own: quorum queues,
native delayed delivery of countdowns and retries, prefetch 1, and redeliveries the job's leases handle.

Two workers (one pool process each) serve the whole module; no beat runs, so nothing here is rescued by
the reaper: a job that recovers did so through RabbitMQ's redelivery and the leases alone.
"""
from __future__ import annotations

import os
import threading
import time

import pytest
from django.conf import settings

from jobs import leases, services, states
from jobs.models import GenerationJob
from tests import brokers
from tests.e2e.test_worker_jobs import LIMITS, create_job, events, wait_status
from tests.processes import ProcessGroup, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = ("worker-a", "worker-b")


@pytest.fixture(scope="module")
def rabbitmq(django_db_setup, django_db_blocker):
    """This process and the workers it starts on a fresh vhost; deleted afterwards."""
    if not brokers.rabbitmq_reachable():
        pytest.fail(f"RabbitMQ is not reachable at {brokers.RABBITMQ_URL} (set RABBITMQ_URL)")
    with brokers.rabbitmq_vhost_broker() as (vhost, url):
        yield vhost


@pytest.fixture(scope="module")
def workers(rabbitmq, backend, django_db_blocker):
    group = ProcessGroup()
    with django_db_blocker.unblock():
        for name in WORKERS:
            group.start_worker(name, concurrency=1, SD_API_URL=backend.url, wait=False, **LIMITS)
        group.wait_ready()
    yield group
    group.stop_all()


@pytest.fixture
def short_limits(settings):
    settings.JOBS = {**settings.JOBS, "CANCEL_GRACE_S": 3.0, "RETRY_MAX": 3, "STALE_AFTER_S": 5.0}
    return settings


def logs(group: ProcessGroup) -> str:
    return "".join(group.log(name) for name in WORKERS)


def holder_worker(group: ProcessGroup, lease: leases.Lease) -> str:
    """Which of the module's workers the lease's pool process belongs to (each runs in its own group)."""
    pgid = os.getpgid(lease.pid)
    return next(name for name in WORKERS if group.procs[name].pid == pgid)


def running_lease(job: GenerationJob, stage: str) -> leases.Lease | None:
    """A running lease of the stage, or of one of its scenes (`images.3`: one task per scene)."""
    current = GenerationJob.objects.get(pk=job.pk)
    running = [lease for lease in leases.stages(current.pk, current.attempts)
               if lease.state == leases.RUNNING and lease.stage.split(".", 1)[0] == stage]
    return running[0] if running else None


def test_amqp__jobs_complete_through_quorum_queues_and_metrics_read_their_depth(workers, rabbitmq, short_limits):
    jobs = [create_job("full_video"), create_job("audio_generation")]

    for job in jobs:
        done = wait_status(job, states.TERMINAL, timeout=90)
        assert done.status == states.COMPLETED, (done.error_message, logs(workers)[-3000:])
        assert [e.status for e in events(done) if e.kind == "status"] == ["queued", "processing", "completed"]

    types = brokers.queue_types(rabbitmq)
    assert {name: types.get(name) for name in settings.JOB_QUEUES} == {name: "quorum" for name in settings.JOB_QUEUES}
    assert types.get("celery_delayed_0") == "quorum"  # the native delayed delivery ladder
    from ops import metrics

    assert metrics.broker_source() == "rabbitmq"
    assert metrics.queue_depths() == {name: 0 for name in settings.JOB_QUEUES}
    text = metrics.render()[0].decode()
    assert 'jobs_metrics_source_up{source="rabbitmq"} 1.0' in text
    assert 'jobs_queue_depth{queue="image_generation"} 0.0' in text


def test_amqp__flower_sees_the_workers_through_rabbitmq(workers):
    import httpx

    from tests.processes import BIN, free_port, subprocess_env

    port = free_port()
    workers.start("flower", [str(BIN / "celery"), "-A", "config", "flower", f"--port={port}", "--address=127.0.0.1",
                             "--basic-auth=ops:secret"], subprocess_env())

    def names() -> set[str]:
        try:
            reply = httpx.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", auth=("ops", "secret"), timeout=10)
        except httpx.HTTPError:
            return set()
        return {name.split("-", 2)[0] + "-" + name.split("-", 2)[1] for name in reply.json()} if reply.is_success else set()

    try:
        assert wait_until(lambda: names() >= set(WORKERS), 60, interval=1.0, message="Flower to list both workers")
    finally:
        workers.stop("flower")


def test_amqp__a_countdown_waits_in_the_broker_and_is_delivered(workers, rabbitmq):
    from jobs import tasks

    from config.celery import app
    from ops.amqp_queues import queue_depths

    sent = time.monotonic()
    result = tasks.cleanup_results_task.apply_async(countdown=4)

    # Native delayed delivery: the message waits in RabbitMQ's delay queues (4 s = 0b100: the level-2
    # queue), not in a worker's memory. Passive declares answer at once, well within the 4 s.
    depths = queue_depths(app, [f"celery_delayed_{level}" for level in range(28)] + ["maintenance"])
    assert {name: n for name, n in depths.items() if n} == {"celery_delayed_2": 1}, depths
    wait_until(lambda: f"task_id={result.id}" in logs(workers) and "task_postrun" in logs(workers).split(
        f"task_id={result.id}", 1)[-1], 20, message="the countdown task to run")
    assert time.monotonic() - sent >= 3.5


def test_amqp__transient_errors_are_retried_with_a_countdown_three_times(workers, backend, short_limits):
    job = create_job("image_generation", ("Rain [flaky:3] falls.", "Sun."))

    done = wait_status(job, states.TERMINAL, timeout=60)

    assert done.status == states.COMPLETED, (done.error_message, logs(workers)[-3000:])
    assert backend.count("[flaky:3]") == 4  # three 503s, then the answer
    log = logs(workers)
    # Whole seconds (native delayed delivery); the third pass through the delay queues is not dropped as a
    # dead-letter cycle (RabbitMQ < 4.0.1, celery#9867).
    for n in (1, 2, 3):
        assert f"retry {n} of 3 in 1.0 s" in log or f"retry {n} of 3 in 2.0 s" in log, log[-3000:]
    assert (done.attempts, done.lost_count) == (1, 0)


def test_amqp__each_pool_process_holds_one_message_at_most(workers, rabbitmq, backend, short_limits):
    from ops import metrics

    jobs = [create_job("image_generation", tuple(f"Queue {n} [slow:1] scene {s}." for s in range(4)))
            for n in range(4)]
    ready: list[int] = []  # messages waiting in the queue (a passive declare: fast)
    unacked: list[int] = []  # messages handed to a worker and not yet acknowledged (rabbitmqctl: slow)
    done = threading.Event()

    def sample_unacked() -> None:
        while not done.is_set():
            unacked.append(brokers.queue_counts(rabbitmq).get("image_generation", (0, 0))[1])

    sampler = threading.Thread(target=sample_unacked, daemon=True)
    sampler.start()

    def finished() -> bool:
        ready.append(metrics.queue_depths(["image_generation"])["image_generation"])
        return all(GenerationJob.objects.get(pk=job.pk).status in states.TERMINAL for job in jobs)

    try:
        wait_until(finished, 90, interval=0.1, message="the four jobs to finish")
    finally:
        done.set()
        sampler.join(30)

    assert all(GenerationJob.objects.get(pk=job.pk).status == states.COMPLETED for job in jobs)
    assert len(unacked) >= 2 and max(unacked) <= len(WORKERS), unacked  # 2 workers x 1 process x prefetch 1
    assert max(unacked) == len(WORKERS), unacked  # ... and both were busy
    assert max(ready) >= 1, ready  # the rest waited in the broker, not in a worker


def test_amqp__a_worker_losing_its_connection_mid_task_is_not_run_twice(workers, rabbitmq, backend, short_limits):
    # One task per scene: each scene long enough for rabbitmqctl to cut the connection on a busy machine.
    texts = tuple(f"Cut [slow:8] scene {n}." for n in range(3))
    job = create_job("image_generation", texts)
    wait_until(lambda: running_lease(job, "images") and backend.count("Cut [slow") >= 1, 30,
               message="the images stage to be running")
    lease = running_lease(job, "images")
    holder = holder_worker(workers, lease)

    # RabbitMQ requeues the unacknowledged messages of a connection it closes, while the pool process that
    # runs one carries on: the idle worker gets the copy at once and must see the live holder and do nothing.
    closed = brokers.close_process_connections(rabbitmq, {workers.procs[holder].pid})  # its consumer's

    done = wait_status(job, states.TERMINAL, timeout=60)
    assert closed >= 1
    assert done.status == states.COMPLETED, (done.error_message, logs(workers)[-3000:])
    assert (done.attempts, done.lost_count) == (1, 0)
    for text in texts:  # every scene image requested once, never two requests for one scene at a time
        assert (backend.count(text), backend.peak_in_flight(text)) == (1, 1), text
    # The copy found the scene held by the live process (or, when it waited behind it, finished).
    assert f"already held; duplicate task {lease.task_id} does nothing" in logs(workers) or (
        f"already finished; duplicate task {lease.task_id} does nothing" in logs(workers)), lease


def test_amqp__sigkilled_worker_job_is_redelivered_at_once_and_completes_on_the_other(workers, backend, short_limits):
    texts = tuple(f"Kill [slow:0.6] scene {n}." for n in range(6))
    job = create_job("image_generation", texts)
    wait_until(lambda: running_lease(job, "images") and backend.count("Kill [slow") >= 2, 30,
               message="the images stage to be running")
    victim = holder_worker(workers, running_lease(job, "images"))

    workers.kill(victim)  # the worker and its pool: its connection drops, RabbitMQ requeues at once
    killed_at = time.monotonic()

    done = wait_status(job, states.TERMINAL, timeout=60)
    recovered_s = time.monotonic() - killed_at
    assert done.status == states.COMPLETED, (done.error_message, logs(workers)[-3000:])
    assert (done.attempts, done.lost_count) == (2, 1)
    assert [e.status for e in events(done) if e.kind == "status"] == [
        "queued", "processing", "queued", "processing", "completed"]
    # No reaper runs in this module: only the redelivery can have requeued it, well within STALE_AFTER_S.
    requeued = [e for e in events(done) if e.kind == "status" and e.status == states.QUEUED][1]
    assert requeued.message.startswith("the worker running stage images."), requeued.message  # a scene's
    print(f"amqp sigkill: job recovered and completed {recovered_s:.1f} s after the kill")
