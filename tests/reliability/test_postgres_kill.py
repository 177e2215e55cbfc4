"""PostgreSQL connections terminated (pg_terminate_backend) mid-job: workers recover and the jobs finish."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs import queues, states
from jobs.models import GenerationJob
from jobs.tasks import cleanup_results_task
from tests.processes import wait_until

from .conftest import LIMITS, Watchers, assert_settled, owned_jobs
from .scenario import assert_all_completed, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


def terminate_other_backends() -> int:
    """Kill every connection to the test database except this process's own; how many went."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_postgres_kill__terminated_connections_mid_job_jobs_still_complete(processes, periodic_tasks, backend):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL")
    # Given running jobs (the worker, beat and daphne all holding connections), watched over websockets
    env = {**LIMITS, "JOBS_MAX_ATTEMPTS": "5", "SD_API_URL": backend.url}
    port = processes.start_daphne(wait=False, **env)
    worker = processes.start_worker(concurrency=2, wait=False, **env)
    processes.start_beat(**env)
    processes.wait_ready()
    jobs, token = owned_jobs(tuple(f"Market [slow:0.4] scene {n}." for n in range(6)), count=3)
    job_ids = [str(job.pk) for job in jobs]
    watchers = Watchers.for_jobs(port, jobs, token, timeout=90).start()

    # When every other connection to the database is terminated, three times, while stages run
    wait_until(lambda: GenerationJob.objects.filter(pk__in=job_ids, status=states.PROCESSING, progress__gt=10).exists(),
               60, interval=0.05, message="a job to be in the middle of its images")
    terminated = []
    for _ in range(3):
        terminated.append(terminate_other_backends())
        time.sleep(1.0)

    # Then the worker recovers and every job completes
    wait_finished(job_ids, 75, message="every job to finish after the connections were killed")
    done = assert_settled(job_ids, watchers)
    assert terminated[0] > 0, "the worker's connections were there to kill"
    assert_all_completed(done)
    assert worker.poll() is None and processes.procs["daphne"].poll() is None


def discard_expired_task() -> str:
    """Send a task that expired before it was sent; the worker's main process discards it and stores REVOKED."""
    result = cleanup_results_task.apply_async(queue=queues.MAINTENANCE, expires=timezone.now() - timedelta(hours=1))
    wait_until(lambda: TaskResult.objects.filter(task_id=result.id, status="REVOKED").exists(), 30,
               message=f"the worker to discard the expired task {result.id}")
    return result.id


def test_postgres_kill__expired_task_after_terminated_connections_worker_survives(processes):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL")
    # Given a worker whose main process has stored a result (an expired periodic task it discarded: a
    # busy worker does this in production, and it did in this file's first test under load)
    worker = processes.start_worker(concurrency=1, **LIMITS)
    discard_expired_task()

    # When every other connection to the database is terminated, and the next expired task arrives
    assert terminate_other_backends() > 0
    discarded = discard_expired_task()

    # Then the main process stored it over a new connection and still consumes: a task after it runs
    assert worker.poll() is None, processes.log("worker")[-3000:]
    done = cleanup_results_task.apply_async(queue=queues.MAINTENANCE)
    wait_until(lambda: TaskResult.objects.filter(task_id=done.id, status="SUCCESS").exists(), 30,
               message="the worker to run a task after the discard")
    assert discarded and worker.poll() is None
