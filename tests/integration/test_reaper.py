"""The reaper and result cleanup against real PostgreSQL and Redis (no worker: it is called directly)."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from jobs import leases, states
from jobs.models import GenerationJob
from jobs.reaper import cleanup_task_results, reap_jobs
from tests.factories import make_job, make_processing_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def limits(settings):
    settings.JOBS = {**settings.JOBS, "STALE_AFTER_S": 60.0, "MAX_ATTEMPTS": 3, "QUEUED_REDISPATCH_AFTER_S": 120.0}


def age(job, **fields_ago: float) -> None:
    """Move timestamps of a job into the past (what waiting would do)."""
    now = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(**{name: now - timedelta(seconds=s) for name, s in fields_ago.items()})


def test_reaper__stale_processing_job_is_requeued_as_a_new_attempt_and_dispatched():
    job = make_processing_job()
    age(job, heartbeat_at=61)

    report = reap_jobs()

    again = GenerationJob.objects.get(pk=job.pk)
    assert report.requeued == [str(job.pk)]
    assert again.status == states.QUEUED and again.attempts == 2 and again.lost_count == 1
    assert again.celery_task_id and again.dispatched_at is not None  # dispatched on commit of the requeue
    assert "no heartbeat for 61 s" in again.events.order_by("-seq").filter(status="queued").first().message


def test_reaper__job_lost_max_times_is_failed():
    job = make_processing_job()
    GenerationJob.objects.filter(pk=job.pk).update(lost_count=2)
    age(job, heartbeat_at=300)

    report = reap_jobs()

    failed = GenerationJob.objects.get(pk=job.pk)
    assert report.failed == [str(job.pk)]
    assert failed.status == states.FAILED and failed.error_message == "worker lost 3 times"


def test_reaper__fresh_heartbeat_and_retry_waiting_stage_are_left_alone():
    fresh = make_processing_job()
    waiting = make_processing_job()
    age(waiting, heartbeat_at=120)
    leases.set_stage(waiting.pk, waiting.attempts, "images", "task-1", leases.RETRYING, ttl_s=60)

    report = reap_jobs()

    assert report.requeued == [] and report.failed == []
    assert GenerationJob.objects.get(pk=fresh.pk).status == states.PROCESSING
    assert GenerationJob.objects.get(pk=waiting.pk).status == states.PROCESSING


def test_reaper__queued_job_without_a_live_dispatch_is_dispatched_again(settings):
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 0}  # all three admitted at create
    never = make_job()
    GenerationJob.objects.filter(pk=never.pk).update(dispatched_at=None, celery_task_id="")
    age(never, queued_at=30, admitted_at=30)
    long_ago = make_job()
    age(long_ago, queued_at=500, admitted_at=500, dispatched_at=121)
    recent = make_job()
    recent_task = GenerationJob.objects.get(pk=recent.pk).celery_task_id

    report = reap_jobs()

    assert sorted(report.redispatched) == sorted([str(never.pk), str(long_ago.pk)])
    assert GenerationJob.objects.get(pk=never.pk).celery_task_id
    assert GenerationJob.objects.get(pk=recent.pk).celery_task_id == recent_task


def test_reaper__a_long_backlog_waiting_for_admission_is_never_sent_again(settings, monkeypatch):
    """Jobs wait in the database, not the broker: a job never admitted (its owner at their limit) has no
    message, and however long it waits the reaper sends none."""
    from jobs import queue_positions

    monkeypatch.setattr(queue_positions, "REFRESH_MIN_INTERVAL_S", 0)
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 1, "ADMISSION_HEADROOM": 0}
    running = make_job()
    backlog = make_job(project=running.project)
    age(backlog, queued_at=3600)

    report = reap_jobs()

    assert GenerationJob.objects.get(pk=running.pk).admitted_at is not None
    waiting = GenerationJob.objects.get(pk=backlog.pk)
    assert report.redispatched == [] and waiting.admitted_at is None and waiting.celery_task_id == ""
    assert waiting.status == states.QUEUED and waiting.queue_position == 1


def test_reaper__a_second_reaper_run_at_the_same_time_does_nothing():
    job = make_processing_job()
    age(job, heartbeat_at=61)

    with leases.exclusive("reaper", ttl_s=30) as held:
        assert held
        report = reap_jobs()

    assert report.ran is False
    assert GenerationJob.objects.get(pk=job.pk).status == states.PROCESSING
    assert reap_jobs().requeued == [str(job.pk)]  # once the lock is free


def test_reaper__cleanup_deletes_only_expired_task_results(settings):
    settings.CELERY_RESULT_EXPIRES = 3600
    old = TaskResult.objects.create(task_id=str(uuid.uuid4()), status="SUCCESS")
    new = TaskResult.objects.create(task_id=str(uuid.uuid4()), status="SUCCESS")
    TaskResult.objects.filter(pk=old.pk).update(date_done=timezone.now() - timedelta(seconds=3601))

    assert cleanup_task_results() == 1

    assert list(TaskResult.objects.values_list("pk", flat=True)) == [new.pk]


def test_reaper__periodic_tasks_are_created_idempotently_on_the_maintenance_queue():
    call_command("setup_periodic_tasks", verbosity=0)
    call_command("setup_periodic_tasks", verbosity=0)

    tasks = {t.task: t for t in PeriodicTask.objects.exclude(task__startswith="celery.")}
    assert set(tasks) == {"jobs.tasks.reap_jobs_task", "jobs.tasks.cleanup_results_task", "jobs.tasks.enforce_deadlines_task",
                          "api.tasks.sweep_idempotency_keys_task", "jobs.tasks.sweep_media_task",
                          "webhooks.tasks.sweep_deliveries_task", "webhooks.tasks.cleanup_deliveries_task",
                          "jobs.tasks.expire_artifacts_task"}
    assert all(t.queue == "maintenance" and t.enabled for t in tasks.values())
    assert tasks["jobs.tasks.reap_jobs_task"].interval.every == 30


def test_reaper__job_running_past_job_time_limit_is_failed_timed_out(settings):
    # Given a whole-job limit of an hour, a job started 61 minutes ago and one started 59 minutes ago
    settings.JOBS = {**settings.JOBS, "JOB_TIME_LIMIT_S": 3600.0}
    overdue, running = make_processing_job(), make_processing_job()
    age(overdue, started_at=3660)
    age(running, started_at=3540)

    # When the reaper runs
    report = reap_jobs()

    # Then only the overdue job failed, with a message starting "timed out"
    overdue.refresh_from_db()
    running.refresh_from_db()
    assert report.timed_out == [str(overdue.pk)]
    assert overdue.status == states.FAILED and overdue.error_message.startswith("timed out after 3600 s")
    assert running.status == states.PROCESSING
