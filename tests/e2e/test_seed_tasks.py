"""Tasks written on config.celery.BaseTask outside the pipeline, the way the design documents write them,
run by a real Celery worker process (tests/tasks_for_tests.py), with their pushes read off the real channel
layer."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from config.celery import app
from jobs import states
from jobs.locations import job_media_dir
from jobs.models import GenerationJob, JobEvent
from jobs.services import JobService
from realtime.events import JOB_STATUS_EVENT, job_group_name
from tests.factories import make_project
from tests.processes import wait_until
from tests.tasks_for_tests import SEED_FLAKY_TASK_NAME, SEED_SLOW_TASK_NAME, SEED_TASK_NAME

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TEST_TASKS = ["-I", "tests.tasks_for_tests"]
# A subscription takes effect a moment after group_add returns (realtime/consumers.py CATCH_UP_AFTER_S).
SUBSCRIBE_SETTLE_S = 1.0


def send(task_name: str, *args: Any) -> None:
    """Queue a test task on `maintenance`; the job type's own stage tasks wait unconsumed on their queue."""
    app.send_task(task_name, args=list(args), queue="maintenance")


async def pushes_until_terminal(job_id: str, start: Any, timeout: float) -> list[dict[str, Any]]:
    """Subscribe to the job's group, call `start()`, and collect the status messages until a terminal one."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(job_group_name(job_id), channel)
    messages: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(SUBSCRIBE_SETTLE_S)
        await sync_to_async(start)()
        deadline = time.monotonic() + timeout
        while not messages or messages[-1]["status"] not in states.TERMINAL:
            event = await asyncio.wait_for(layer.receive(channel), max(0.1, deadline - time.monotonic()))
            # A waiting job's `queue` messages (its place in line) share the group but carry no status
            if event.get("type") == JOB_STATUS_EVENT and event["payload"]["type"] == "status":
                messages.append(event["payload"])
    finally:
        await layer.group_discard(job_group_name(job_id), channel)
    return messages


def recorded(job: GenerationJob) -> list[tuple[int, str, str, float]]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", "kind", "status", "progress"))


def test_seed_task__written_the_documents_way_ends_completed_with_every_step_pushed(processes) -> None:
    # Given a worker running the test tasks, and a job created through JobService
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS)
    job = JobService.create_job(make_project().pk, "image_generation")

    # When a task on BaseTask reports progress 10 … 90 through JobService and marks the job completed
    pushes = asyncio.run(pushes_until_terminal(str(job.pk), lambda: send(SEED_TASK_NAME, str(job.pk)), 60))

    # Then the job is completed with the task's result, started by BaseTask for this worker
    job.refresh_from_db()
    assert (job.status, job.progress, job.result["written_by"]) == ("completed", 100.0, "seed_style_task")
    assert job.started_at and job.completed_at and "@" in job.worker
    events = recorded(job)
    assert [(kind, status) for _, kind, status, _ in events] == [
        ("status", "queued"), ("status", "processing"), *[("progress", "processing")] * 9, ("status", "completed")]
    assert [progress for _, kind, _, progress in events if kind == "progress"] == [float(v) for v in range(10, 100, 10)]
    # ...and every event after the creation was pushed, in order, holding what the event holds (the
    # creation's own push leaves this process from its publisher thread, and may land after the subscription)
    assert [(m["seq"], m["status"], m["progress"]) for m in pushes if m["seq"] > 1] == [(seq, status, progress)
                                                                        for seq, _, status, progress in events[1:]]


def test_seed_task__transient_errors_are_retried_with_backoff(processes) -> None:
    # Given a worker whose retries back off from 0.2 s
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS,
                           JOBS_RETRY_BACKOFF_S="0.2", JOBS_RETRY_MAX="3")
    job = JobService.create_job(make_project().pk, "image_generation")

    # When the task fails twice with a connection error before it succeeds
    send(SEED_FLAKY_TASK_NAME, str(job.pk), 2)

    # Then the third try completes the job with the returned result, in the same attempt
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status in states.TERMINAL, 60, message="job finished")
    job.refresh_from_db()
    assert (job.status, job.attempts, job.result["tries"], job.progress) == ("completed", 1, 3, 100.0)
    assert "retry 2 of 3" in processes.log("worker")


def test_seed_task__a_job_running_past_job_time_limit_is_failed_and_its_task_stops(processes) -> None:
    # Given a worker where a whole job may run 3 s, heartbeating every 0.3 s
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS,
                           JOB_TIME_LIMIT_S="3", JOBS_HEARTBEAT_INTERVAL_S="0.3")
    job = JobService.create_job(make_project().pk, "audio_generation")

    # When its task would work for a minute
    send(SEED_SLOW_TASK_NAME, str(job.pk), 60)

    # Then the job fails "timed out" after about 3 s of running, and the task stops instead of completing it
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status in states.TERMINAL, 40, message="job finished")
    job.refresh_from_db()
    assert job.status == "failed" and job.error_message.startswith("timed out after 3 s")
    assert 3 <= (job.completed_at - job.started_at).total_seconds() < 30
    wait_until(lambda: f"job {job.pk}: stage {SEED_SLOW_TASK_NAME} stopped" in processes.log("worker"), 20,
               message="the task stopped")
    assert recorded(job)[-1][2] == "failed"


def test_seed_task__a_job_created_with_its_task_id_runs_only_that_task(processes) -> None:
    # Given a worker consuming every queue (the plan's stage queues too), and a full_video job created the
    # documents' way with the id of the task that will do its work
    app.control.purge()  # earlier tests' stage messages wait on these queues; this worker starts on empty ones
    processes.start_worker(concurrency=1, extra_args=TEST_TASKS)
    task_id = str(uuid.uuid4())
    job = JobService.create_job(make_project().pk, "full_video", celery_task_id=task_id)

    # When that task runs it, reporting 10 … 90 and marking it completed
    app.send_task(SEED_TASK_NAME, args=[str(job.pk)], queue="maintenance", task_id=task_id)

    # Then the job is completed with only the caller's work: its steps, and no stage of the plan
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status in states.TERMINAL, 60, message="job finished")
    job.refresh_from_db()
    assert (job.status, job.result["written_by"], job.celery_task_id) == ("completed", "seed_style_task", task_id)
    assert [(kind, status) for _, kind, status, _ in recorded(job)] == [
        ("status", "queued"), ("status", "processing"), *[("progress", "processing")] * 9, ("status", "completed")]
    assert not JobEvent.objects.filter(job=job, stage__icontains="pars").exists()
    # ...and the worker received the caller's task alone: nothing of the plan was ever sent to it
    received = [line for line in processes.log("worker").splitlines() if " received" in line]
    assert len(received) == 1 and SEED_TASK_NAME in received[0] and task_id in received[0]
    folder = job_media_dir(job.pk)  # the worker shares this MEDIA_ROOT (tests/processes.py)
    assert not folder.exists() or not any(folder.iterdir())


def test_seed_task__cancelling_a_job_created_with_its_task_id_revokes_that_task(processes) -> None:
    # Given a running worker and a job created with the id of a task not sent yet
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS)
    task_id = str(uuid.uuid4())
    job = JobService.create_job(make_project().pk, "audio_generation", celery_task_id=task_id)

    # When the job is cancelled, and the caller's task arrives afterwards
    JobService.cancel_job(job.pk)
    wait_until(lambda: "revoked" in processes.log("worker") and task_id in processes.log("worker"), 20,
               message="the worker heard the revoke")
    app.send_task(SEED_SLOW_TASK_NAME, args=[str(job.pk), 30], queue="maintenance", task_id=task_id)

    # Then the worker discards that task: the job stays cancelled, and nothing ran for it
    wait_until(lambda: f"Discarding revoked task: {SEED_SLOW_TASK_NAME}[{task_id}]" in processes.log("worker"), 20,
               message="the revoked task discarded")
    assert [status for _, _, status, _ in recorded(job)] == ["queued", "cancelled"]
