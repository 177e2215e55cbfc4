"""JobService (CONTRACT.md, "The seed's programming interface") against the real database."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.exceptions import InvalidJobInput, InvalidTransition, JobNotFound, ProjectNotFound
from jobs import services
from jobs.models import GenerationJob, JobEvent
from jobs.reaper import reap_jobs
from jobs.services import JobService
from tests.factories import make_job, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def history(job) -> list[tuple[str, str, float]]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("kind", "status", "progress"))


def test_job_service__a_task_that_never_starts_its_job_ends_completed(captured_events) -> None:
    # Given a job created the documents' way
    project = make_project()
    job = JobService.create_job(project.pk, "image_generation", params={"width": 320, "height": 180})
    assert job.status == "queued" and job.params["width"] == 320

    # When its task reports progress 10 … 90 and marks it completed, never calling a "start"
    for value in range(10, 100, 10):
        JobService.update_job_progress(job.pk, value, current_stage=f"Step {value}")
    done = JobService.mark_job_completed(job.pk, result={"artifacts": [], "note": "seed"})

    # Then the job went queued -> processing -> completed, every step an event handed on to the push
    assert (done.status, done.progress, done.result, done.current_stage) == (
        "completed", 100.0, {"artifacts": [], "note": "seed"}, "Completed")
    assert history(job) == [("status", "queued", 0.0), ("status", "processing", 0.0),
                            *[("progress", "processing", float(v)) for v in range(10, 100, 10)],
                            ("status", "completed", 100.0)]
    pushed = [(e.seq, e.status, e.progress) for e in captured_events if e.job_id == str(job.pk)]
    assert [seq for seq, _, _ in pushed] == list(range(1, 13)) and pushed[-1][1:] == ("completed", 100.0)


def test_job_service__progress_is_clamped_and_never_goes_down() -> None:
    # Given a running job
    job = make_job()
    JobService.update_job_status(job.pk, "processing", progress=-20, current_stage="Starting")
    assert JobService.get_job(job.pk).progress == 0.0
    # When progress overshoots, goes back, or is not a number
    JobService.update_job_progress(job.pk, 55.64)
    JobService.update_job_progress(job.pk, 30)
    assert JobService.get_job(job.pk).progress == 55.6
    JobService.update_job_progress(job.pk, float("nan"))
    over = JobService.update_job_progress(job.pk, 250, current_stage="Nearly")
    # Then it stays within 0..100 and never below what was reached
    assert (over.progress, over.current_stage) == (100.0, "Nearly")


def test_job_service__timestamps_are_set_by_the_transitions() -> None:
    # Given a new job
    job = JobService.create_job(make_project().pk, "audio_generation")
    assert job.created_at and job.queued_at and job.started_at is None and job.completed_at is None
    # When it runs and fails
    running = JobService.update_job_status(job.pk, "processing", progress=40, current_stage="Narrating")
    failed = JobService.mark_job_failed(job.pk, "the voice engine is missing")
    # Then started_at, completed_at and updated_at follow, and the progress reached is kept
    assert running.started_at is not None and running.completed_at is None
    assert (failed.status, failed.error_message, failed.progress) == ("failed", "the voice engine is missing", 40.0)
    assert failed.started_at == running.started_at and failed.completed_at >= failed.started_at
    assert failed.updated_at >= failed.completed_at


def test_job_service__status_update_on_a_processing_job_records_progress_only() -> None:
    job = make_job()
    JobService.update_job_status(job.pk, "processing")
    again = JobService.update_job_status(job.pk, "processing", progress=20, current_stage="Images")
    assert (again.status, again.progress, again.current_stage) == ("processing", 20.0, "Images")
    assert [kind for kind, _, _ in history(job)] == ["status", "status", "progress"]
    with pytest.raises(InvalidJobInput):
        JobService.update_job_status(job.pk, "exploded")


def test_job_service__a_finished_job_is_left_alone() -> None:
    # Given a job cancelled while its task ran
    job = make_job()
    JobService.update_job_progress(job.pk, 30)
    cancelled = JobService.cancel_job(job.pk)
    events_before = len(history(job))
    # When the task, not knowing, reports and completes
    late = JobService.update_job_progress(job.pk, 80)
    final = JobService.mark_job_completed(job.pk, result={})
    # Then the cancel wins and nothing was recorded; cancelling again is refused
    assert cancelled.status == late.status == final.status == "cancelled" and final.progress == 30.0
    assert len(history(job)) == events_before
    with pytest.raises(InvalidTransition):
        JobService.cancel_job(job.pk)


def test_job_service__projects_are_validated() -> None:
    # Given a project with two jobs, and ids of no project at all
    project = make_project()
    first, second = make_job(project=project), make_job(project=project)
    missing = uuid.uuid4()
    # Then listing names the jobs newest first, and an unknown project raises, for listing and creating
    assert [job.pk for job in JobService.get_project_jobs(project.pk)] == [second.pk, first.pk]
    for bad in (missing, "not-a-uuid"):
        with pytest.raises(ProjectNotFound):
            JobService.get_project_jobs(bad)
        with pytest.raises(ProjectNotFound):
            JobService.create_job(bad, "image_generation")
    with pytest.raises(JobNotFound):
        JobService.get_job(missing)
    with pytest.raises(InvalidJobInput):
        JobService.create_job(project.pk, "poem")
    assert JobService.get_project_jobs(make_project(owner=make_user()).pk).count() == 0


def test_job_service__create_job_records_the_callers_task_id_and_dispatches_no_plan(captured_events) -> None:
    # Given a caller that runs the job's work in its own task
    job = JobService.create_job(make_project().pk, "full_video", celery_task_id="seed-task-1")
    # Then the job names that task (what a cancel revokes), counts as dispatched and is external: the
    # commit dispatched no plan (the task id is still the caller's, not a plan's first task)
    stored = GenerationJob.objects.get(pk=job.pk)
    assert (stored.celery_task_id, stored.external) == ("seed-task-1", True) and stored.dispatched_at is not None
    assert [e.external for e in captured_events if e.job_id == str(job.pk)] == [True]
    plain = JobService.create_job(make_project().pk, "image_generation")
    assert not GenerationJob.objects.get(pk=plain.pk).external


def test_job_service__an_external_job_is_not_redispatched_by_the_reaper(settings) -> None:
    # Given an external job still waiting for its caller's task, long past the redispatch delay
    settings.JOBS = {**settings.JOBS, "QUEUED_REDISPATCH_AFTER_S": 1.0}
    job = JobService.create_job(make_project().pk, "full_video", celery_task_id="seed-task-2")
    GenerationJob.objects.filter(pk=job.pk).update(dispatched_at=timezone.now() - timedelta(seconds=600))

    # When the reaper runs
    report = reap_jobs()

    # Then it sent nothing for it: still queued, still the caller's task
    assert str(job.pk) not in report.redispatched
    assert GenerationJob.objects.get(pk=job.pk).celery_task_id == "seed-task-2"


def test_job_service__an_external_job_whose_worker_was_lost_is_failed_not_requeued(settings) -> None:
    # Given an external job whose task stopped heartbeating long ago (nothing holds its lease)
    settings.JOBS = {**settings.JOBS, "STALE_AFTER_S": 60.0, "MAX_ATTEMPTS": 3}
    job = JobService.create_job(make_project().pk, "image_generation", celery_task_id="seed-task-3")
    JobService.update_job_progress(job.pk, 10)
    GenerationJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=300))

    # When the reaper runs
    report = reap_jobs()

    # Then the job failed at the first loss: a new attempt would have no task to run it
    failed = GenerationJob.objects.get(pk=job.pk)
    assert report.failed == [str(job.pk)] and (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error_message == "no heartbeat for 300 s; the task that created this job did not finish it"


def test_job_service__retrying_an_external_job_is_refused_naming_why() -> None:
    # Given an external job that failed
    job = JobService.create_job(make_project().pk, "image_generation", celery_task_id="seed-task-4")
    JobService.mark_job_failed(job.pk, "boom")

    # When it is retried, then the retry is refused (409) and the job is left as it was
    with pytest.raises(InvalidTransition, match="done by the task that created it"):
        services.job_retry(job_id=job.pk)
    assert (JobService.get_job(job.pk).status, JobService.get_job(job.pk).attempts) == ("failed", 1)
