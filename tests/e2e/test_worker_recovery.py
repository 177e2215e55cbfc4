"""Crash recovery with real processes: a SIGKILLed worker, a broker that is down at create, a poison job."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.core.management import call_command

from devtools.embedded_redis import free_port, start_embedded_redis
from jobs import leases, states
from jobs.models import GenerationJob
from tests.e2e.test_worker_jobs import LIMITS, create_job, events, wait_status
from tests.processes import ROOT, artifacts_dir, kill_stage_holder, subprocess_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def periodic_tasks(settings):
    """The reaper every 2 s, as `make run` creates it (but with the tests' short interval)."""
    settings.JOBS = {**settings.JOBS, "REAPER_INTERVAL_S": 2.0, "STALE_AFTER_S": 5.0, "CANCEL_GRACE_S": 3.0}
    call_command("setup_periodic_tasks", verbosity=0)
    return settings


def test_worker_recovery__sigkilled_worker_job_completes_on_a_new_worker(processes, periodic_tasks, backend,
                                                                        broker_vhost):
    # Scene images run one task per scene: the killed worker may hold a scene's message it had not started
    # (no lease names it, and Redis gives it back only after its visibility timeout). The reaper then
    # counts the worker lost once the job has been quiet for QUEUED_REDISPATCH_AFTER_S (production 120 s).
    limits = {**LIMITS, "JOBS_QUEUED_REDISPATCH_AFTER_S": "8"}
    processes.start_beat(**limits)
    processes.start_worker("worker-a", concurrency=1, SD_API_URL=backend.url, **limits)
    texts = tuple(f"Kill [slow:0.6] scene {n}." for n in range(5))
    job = create_job("image_generation", texts)
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).progress > 20, 60, message="the job to be running")

    processes.kill("worker-a")  # SIGKILL the worker and its pool: no chance to ack, reject or clean up
    killed_at = time.monotonic()
    processes.start_worker("worker-b", concurrency=1, SD_API_URL=backend.url, **limits)

    done = wait_status(job, states.TERMINAL, timeout=60)
    assert done.status == states.COMPLETED, done.error_message
    assert time.monotonic() - killed_at < 60
    statuses = [e.status for e in events(done) if e.kind == "status"]
    if (done.attempts, done.lost_count) == (1, 0):
        # Killed between two scenes, holding no scene it had started: nothing was lost. RabbitMQ gives an
        # unstarted message back at once; on Redis the worker may have held none (a slow machine's kill can
        # land after the last prefetched scene was taken). worker-b ran the rest within the first attempt.
        assert statuses == ["queued", "processing", "completed"]
    else:  # killed mid-scene (the copy finds the dead holder), or on Redis the reaper: a lost worker
        assert done.attempts == 2 and done.lost_count == 1
        assert statuses == ["queued", "processing", "queued", "processing", "completed"]


def test_worker_recovery__broker_down_at_create_job_is_dispatched_when_the_broker_is_back(
        processes, periodic_tasks, broker_vhost):
    port = free_port()
    if broker_vhost:
        # RabbitMQ (TEST_BROKER=amqp): the creating process's broker is a port nobody listens on; the broker
        # that is "back" is the session's vhost, which the beat and worker below use.
        down, back = {"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{port}/{broker_vhost}"}, {}
    else:
        # Redis: a Redis on `port` (broker, channel layer and locks) that is not running yet.
        down = back = {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    code = ("import django; django.setup(); from tests.factories import make_job; "
            "job = make_job(job_type='audio_generation'); print('JOB', job.pk, job.status)")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(**down),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.monotonic() - started < 30  # publishing fails fast instead of hanging the request
    assert "broker unreachable, left queued for the reaper" in out.stderr
    job_id = out.stdout.split("JOB ", 1)[1].split()[0]
    job = GenerationJob.objects.get(pk=job_id)
    assert job.status == states.QUEUED and job.dispatched_at is None and job.celery_task_id == ""

    redis_proc = None if broker_vhost else start_embedded_redis(artifacts_dir() / f"redis-{port}", port=port)[0]
    try:
        processes.start_beat(**back, **LIMITS)
        processes.start_worker(concurrency=1, **back, **LIMITS)
        done = wait_status(job, states.TERMINAL, timeout=60)
        assert done.status == states.COMPLETED, done.error_message
        assert done.celery_task_id and done.attempts == 1
    finally:
        processes.stop_all()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def test_worker_recovery__poison_job_is_failed_after_max_lost_workers(processes, periodic_tasks, backend):
    worker = processes.start_worker(concurrency=1, SD_API_URL=backend.url, **LIMITS)
    job = create_job("image_generation", ("Poison [slow:30] scene.", "Second."))

    # Each time a pool process runs the job's image stage, it dies (as if the job crashed it: OOM,
    # segfault). The worker's main process survives and, with acks_late + reject_on_worker_lost,
    # redelivers the message; the job must not be redelivered forever.
    killed: set[int] = set()

    def kill_current_holder() -> bool:
        return kill_stage_holder(job.pk, "images", killed, lambda: backend.count("Poison") > len(killed))

    wait_until(kill_current_holder, 60, interval=0.1, message="the poison job to be failed")
    done = GenerationJob.objects.get(pk=job.pk)
    assert done.status == states.FAILED
    assert done.error_message == "worker lost 3 times"
    assert len(killed) == 3
    assert worker.poll() is None  # the worker itself is still up
    # ... and still works.
    other = create_job("audio_generation")
    assert wait_status(other, states.TERMINAL, timeout=40).status == states.COMPLETED


def test_worker_recovery__worker_that_died_after_claiming_but_before_starting_does_not_strand_the_job(
        processes, short_limits_for_takeover):
    # Given a queued, dispatched job whose first stage was claimed by a worker process that then died
    # before it could start the job (its lease names a pid that no longer exists)
    job = create_job("audio_generation")
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = leases.Lease("parse", "task-of-the-dead-worker", dead.pid, leases.socket.gethostname(), leases.RUNNING,
                         time.time() + 300)
    leases.client().hset(leases._stages_key(job.pk, job.attempts), "parse", lease.raw)
    # When a worker receives the job's task
    processes.start_worker(concurrency=1, **LIMITS)
    # Then it takes the stage over and the job completes in its first attempt, not queued forever
    done = wait_status(job, states.TERMINAL, timeout=60)
    assert (done.status, done.attempts, done.lost_count) == (states.COMPLETED, 1, 0)


@pytest.fixture
def short_limits_for_takeover(settings):
    settings.JOBS = {**settings.JOBS, "STALE_AFTER_S": 5.0}
    return settings
