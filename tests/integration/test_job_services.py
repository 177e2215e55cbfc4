"""The job service against the real database: transitions, clamping, timestamps, seq, late updates."""
from __future__ import annotations

import pytest

from jobs import services, states
from jobs.exceptions import InvalidJobInput, InvalidTransition, JobNotFound
from jobs.models import JobEvent
from realtime.events import committed_message
from tests.factories import make_job, make_processing_job, make_project

pytestmark = pytest.mark.django_db(transaction=True)


def seqs(job) -> list[int]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))


def test_job_create__queued_with_first_event_and_normalised_params() -> None:
    job = make_job(job_type="image_generation", params={"width": 640, "height": 360})
    assert job.status == "queued" and job.progress == 0 and job.attempts == 1 and job.seq == 1
    assert job.params["width"] == 640 and "max_scenes" in job.params
    event = JobEvent.objects.get(job=job)
    assert (event.seq, event.status, event.message) == (1, "queued", "Job created")
    assert job.queued_at is not None and job.started_at is None and job.completed_at is None


@pytest.mark.parametrize(
    ("job_type", "params", "field"),
    [("nope", {}, "job_type"), ("image_generation", {"colour": 1}, "colour"),
     ("image_generation", {"width": "big"}, "width"), ("image_generation", [], "params")],
)
def test_job_create__bad_input_names_the_field(job_type, params, field) -> None:
    project = make_project()
    with pytest.raises(InvalidJobInput) as info:
        services.job_create(project=project, job_type=job_type, params=params)
    assert info.value.field == field


def test_job_create__empty_script_is_refused_before_any_job_exists() -> None:
    project = make_project(script="   \n  ")
    with pytest.raises(InvalidJobInput) as info:
        services.job_create(project=project, job_type="full_video", params={})
    assert info.value.field == "script"
    assert not project.jobs.exists()


def test_job_start__sets_started_and_heartbeat() -> None:
    job = make_job()
    started = services.job_start(job_id=job.pk, worker="w1", task_id="t-1")
    assert started.status == "processing" and started.started_at and started.heartbeat_at
    assert started.worker == "w1" and started.celery_task_id == "t-1"
    assert seqs(job) == [1, 2]


def test_job_report_progress__clamped_and_never_decreasing() -> None:
    job = make_processing_job()
    assert services.job_report_progress(job_id=job.pk, progress=-5, stage="a") is True  # stage moved
    job.refresh_from_db()
    assert job.progress == 0
    services.job_report_progress(job_id=job.pk, progress=40, stage="Generating images (1/3)")
    assert services.job_report_progress(job_id=job.pk, progress=20, stage="Generating images (1/3)") is False
    services.job_report_progress(job_id=job.pk, progress=250, stage="x" * 500)
    job.refresh_from_db()
    assert job.progress == 100 and len(job.current_stage) == 200
    progress_values = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("progress", flat=True))
    assert progress_values == sorted(progress_values)
    assert seqs(job) == list(range(1, job.seq + 1))


def test_job_report_progress__parts_combine_by_stage_weight() -> None:
    job = make_processing_job(job_type="full_video")
    services.job_report_progress(job_id=job.pk, progress=100, stage="Parsing script", part="parse")
    services.job_report_progress(job_id=job.pk, progress=50, stage="Generating images", part="images")
    services.job_report_progress(job_id=job.pk, progress=50, stage="Generating narration", part="audio")
    job.refresh_from_db()
    assert 0 < job.progress < 100
    before = job.progress
    services.job_report_progress(job_id=job.pk, progress=10, stage="Generating images", part="images")
    job.refresh_from_db()
    assert job.progress == before  # a part never goes back either


def test_job_complete__sets_100_result_and_completed_at() -> None:
    job = make_processing_job()
    services.job_report_progress(job_id=job.pk, progress=30, stage="s")
    done = services.job_complete(job_id=job.pk, result={"artifacts": []})
    assert done.status == "completed" and done.progress == 100 and done.completed_at and done.result == {"artifacts": []}


@pytest.mark.parametrize("action", ["fail", "cancel"])
def test_failed_and_cancelled__keep_progress_reached(action: str) -> None:
    job = make_processing_job()
    services.job_report_progress(job_id=job.pk, progress=42.5, stage="s")
    if action == "fail":
        ended = services.job_fail(job_id=job.pk, error_message="boom")
        assert ended.error_message == "boom"
    else:
        ended = services.job_cancel(job_id=job.pk)
    assert ended.progress == 42.5 and ended.completed_at is not None and ended.status in states.TERMINAL


def test_late_updates__are_noops_not_exceptions() -> None:
    job = make_processing_job()
    services.job_cancel(job_id=job.pk)
    before = seqs(job)
    assert services.job_report_progress(job_id=job.pk, progress=90, stage="late") is False
    assert services.job_complete(job_id=job.pk, result={}) is None
    assert services.job_fail(job_id=job.pk, error_message="late") is None
    assert services.job_start(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == "cancelled" and seqs(job) == before


def test_second_completed__is_a_noop() -> None:
    job = make_processing_job()
    services.job_complete(job_id=job.pk, result={"a": 1})
    assert services.job_complete(job_id=job.pk, result={"b": 2}) is None
    job.refresh_from_db()
    assert job.result == {"a": 1}


def test_stale_attempt__is_ignored() -> None:
    job = make_processing_job()
    services.job_record_lost_worker(job_id=job.pk, attempt=1, reason="worker lost")
    assert services.job_complete(job_id=job.pk, result={}, attempt=1) is None
    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 2 and job.lost_count == 1


def test_job_update_status__requeue_of_a_processing_job_starts_a_new_attempt() -> None:
    # processing -> queued is "a new attempt" whichever service call makes it; reusing the attempt number
    # would let the old attempt's late updates through and make progress go down within one attempt.
    job = make_processing_job()
    services.job_report_progress(job_id=job.pk, progress=40, stage="Generating images")
    requeued = services.job_update_status(job_id=job.pk, status="queued", message="operator requeue")
    assert requeued is not None and requeued.attempts == 2 and requeued.progress == 0
    assert services.job_report_progress(job_id=job.pk, progress=50, stage="late", attempt=1) is False
    assert services.job_start(job_id=job.pk, attempt=1) is None
    event = JobEvent.objects.filter(job=job).order_by("-seq").first()
    assert (event.status, event.attempt) == ("queued", 2)


def test_job_cancel__finished_job_raises_invalid_transition() -> None:
    job = make_processing_job()
    services.job_complete(job_id=job.pk, result={})
    with pytest.raises(InvalidTransition):
        services.job_cancel(job_id=job.pk)


def test_job_retry__failed_or_cancelled_becomes_a_new_attempt() -> None:
    job = make_processing_job()
    services.job_report_progress(job_id=job.pk, progress=50, stage="s")
    services.job_fail(job_id=job.pk, error_message="boom")
    again = services.job_retry(job_id=job.pk)
    assert (again.status, again.attempts, again.progress, again.error_message) == ("queued", 2, 0, None)
    assert again.started_at is None and again.completed_at is None and again.result is None
    services.job_cancel(job_id=job.pk)
    assert services.job_retry(job_id=job.pk).attempts == 3


@pytest.mark.parametrize("setup", ["queued", "processing", "completed"])
def test_job_retry__refused_unless_failed_or_cancelled(setup: str) -> None:
    job = make_job() if setup == "queued" else make_processing_job()
    if setup == "completed":
        services.job_complete(job_id=job.pk, result={})
    with pytest.raises(InvalidTransition):
        services.job_retry(job_id=job.pk)


def test_job_update_status__strict_refuses_forbidden_moves() -> None:
    job = make_job()
    with pytest.raises(InvalidTransition):
        services.job_update_status(job_id=job.pk, status="completed")
    with pytest.raises(InvalidJobInput):
        services.job_update_status(job_id=job.pk, status="exploded")
    assert services.job_update_status(job_id=job.pk, status="processing").status == "processing"


def test_unknown_job__raises_job_not_found() -> None:
    for bad in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        with pytest.raises(JobNotFound):
            services.job_cancel(job_id=bad)
        with pytest.raises(JobNotFound):
            services.job_get(job_id=bad)


def test_heartbeat__only_for_the_running_attempt() -> None:
    job = make_processing_job()
    assert services.job_heartbeat(job_id=job.pk, attempt=1) is True
    assert services.job_heartbeat(job_id=job.pk, attempt=2) is False
    services.job_cancel(job_id=job.pk)
    assert services.job_heartbeat(job_id=job.pk) is False


def test_committed_events__handed_on_only_after_commit(captured_events) -> None:
    from django.db import transaction

    project = make_project()
    with transaction.atomic():
        job = services.job_create(project=project, job_type="audio_generation", params={})
        assert captured_events == []
    assert [(e.seq, e.status) for e in captured_events] == [(1, "queued")]
    assert committed_message(captured_events[0])["job_id"] == str(job.pk)


def test_project_delete__cancels_unfinished_jobs_first(captured_events) -> None:
    from projects.services import project_delete

    job = make_processing_job()
    project_delete(project=job.project)
    assert [e.status for e in captured_events if e.job_id == str(job.pk)][-1] == "cancelled"


def test_job_create__scene_limit_of_the_params_is_checked_before_the_job_exists() -> None:
    project = make_project(script="\n\n".join(f"Paragraph number {i}." for i in range(5)))
    with pytest.raises(InvalidJobInput) as info:
        services.job_create(project=project, job_type="image_generation", params={"max_scenes": 3})
    assert info.value.field == "script" and "maximum is 3" in info.value.message
    assert not project.jobs.exists()


def test_job_record_lost_worker__two_observers_of_one_loss_count_it_once(settings) -> None:
    import threading

    from django.db import connection

    # Given a processing job that already lost one worker (of at most 3)
    settings.JOBS = {**settings.JOBS, "MAX_ATTEMPTS": 3}
    job = make_processing_job()
    services.job_record_lost_worker(job_id=job.pk, attempt=1, reason="first loss")
    services.job_start(job_id=job.pk, worker="w2", attempt=2)
    outcomes: list[str | None] = []
    barrier = threading.Barrier(2)

    def observe() -> None:
        barrier.wait()
        try:
            outcomes.append(services.job_record_lost_worker(job_id=job.pk, attempt=2, reason="no heartbeat"))
        finally:
            connection.close()

    # When the reaper and a redelivered task both see attempt 2's worker gone, at the same moment
    threads = [threading.Thread(target=observe) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one of them requeued the job as attempt 3 and the other found the attempt had moved on
    job.refresh_from_db()
    assert sorted(outcomes, key=str) == [None, "requeued"]
    assert (job.status, job.attempts, job.lost_count) == ("queued", 3, 2)


def test_job_record_lost_worker__the_last_allowed_loss_fails_the_job(settings) -> None:
    # Given a job that lost its worker twice, with 3 losses allowed
    settings.JOBS = {**settings.JOBS, "MAX_ATTEMPTS": 3}
    job = make_processing_job()
    for attempt in (1, 2):
        assert services.job_record_lost_worker(job_id=job.pk, attempt=attempt, reason="gone") == "requeued"
        services.job_start(job_id=job.pk, worker="w", attempt=attempt + 1)
    # When the third worker is lost
    outcome = services.job_record_lost_worker(job_id=job.pk, attempt=3, reason="gone")
    # Then the job fails with how often it happened, and a stale observer changes nothing
    job.refresh_from_db()
    assert outcome == "failed" and (job.status, job.error_message, job.lost_count) == ("failed", "worker lost 3 times", 3)
    assert services.job_record_lost_worker(job_id=job.pk, attempt=3, reason="gone") is None
