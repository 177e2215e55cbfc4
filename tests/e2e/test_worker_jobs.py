"""Jobs run by real Celery worker processes: completion, retries, permanent errors, time limits, cancel."""
from __future__ import annotations

import os
import time

import pytest

from jobs import leases, services, states
from jobs.models import GenerationJob, JobEvent, SceneCheckpoint
from tests.e2e.fake_backend import script
from tests.factories import make_project, make_user
from tests.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Short limits for the worker processes (and, via the `short_limits` fixture, for this process, which
# dispatches on commit and so picks the time limits and the cancel grace period).
LIMITS = {
    "JOBS_HEARTBEAT_INTERVAL_S": "1",
    "JOBS_STALE_AFTER_S": "5",
    "JOBS_REAPER_INTERVAL_S": "2",
    "JOBS_CANCEL_GRACE_S": "3",
    "JOBS_RETRY_BACKOFF_S": "0.2",
    "JOBS_RETRY_BACKOFF_MAX_S": "1",
    "JOBS_RETRY_MAX": "3",
}
SMALL = {"width": 320, "height": 180}
PARAMS = {"image_generation": SMALL, "audio_generation": {}, "full_video": {**SMALL, "fps": 10}}


@pytest.fixture
def short_limits(settings):
    settings.JOBS = {**settings.JOBS, "CANCEL_GRACE_S": 3.0, "RETRY_MAX": 3, "STALE_AFTER_S": 5.0}
    return settings


def create_job(job_type: str, text: str | tuple[str, ...] = ("A calm sea.", "Boats come home."),
               **params: object) -> GenerationJob:
    texts = (text,) if isinstance(text, str) else text
    project = make_project(owner=make_user(), script=script(*texts))
    return services.job_create(project=project, job_type=job_type, params={**PARAMS[job_type], **params})


def wait_status(job: GenerationJob, wanted: set[str] | str, timeout: float = 60.0) -> GenerationJob:
    wanted = {wanted} if isinstance(wanted, str) else wanted
    return wait_until(lambda: (j := GenerationJob.objects.get(pk=job.pk)).status in wanted and j, timeout,
                      message=f"job {job.pk} to become {wanted}")


def events(job: GenerationJob) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job).order_by("seq"))


def worker_log_has(processes, name: str, text: str) -> bool:
    return text in processes.log(name)


@pytest.mark.parametrize("job_type", ["image_generation", "audio_generation", "full_video"])
def test_worker_jobs__each_type_completes_with_artifacts_and_progress(processes, short_limits, job_type):
    processes.start_worker(concurrency=2, **LIMITS)
    job = create_job(job_type)
    assert GenerationJob.objects.get(pk=job.pk).celery_task_id  # dispatched on commit

    done = wait_status(job, states.TERMINAL, timeout=90)

    assert done.status == states.COMPLETED, (done.error_message, processes.log("worker")[-3000:])
    kinds = {a["kind"] for a in done.result["artifacts"]}
    expected = {"image_generation": {"scenes", "image"}, "audio_generation": {"scenes", "audio"},
                "full_video": {"scenes", "image", "audio", "video"}}[job_type]
    assert kinds == expected
    for artifact in done.result["artifacts"]:
        assert artifact["url"].startswith(f"/api/jobs/{job.pk}/artifacts/")
        assert artifact["bytes"] > 0 and artifact["content_type"]
    history = events(done)
    progress = [e.progress for e in history]
    assert progress[0] == 0.0 and progress[-1] == 100.0
    assert progress == sorted(progress), progress  # never down within the attempt
    assert any(0 < p < 100 for p in progress), progress
    assert [e.status for e in history if e.kind == "status"] == ["queued", "processing", "completed"]
    assert [e.seq for e in history] == list(range(1, len(history) + 1))

    # A redelivered copy of the first task, for the finished job, changes nothing.
    from jobs import tasks

    before = GenerationJob.objects.get(pk=job.pk)
    tasks.parse_script_task.apply_async((str(job.pk), before.attempts), task_id=before.celery_task_id,
                                        queue="maintenance")
    wait_until(lambda: worker_log_has(processes, "worker", f"signal=task_postrun task=jobs.tasks.parse_script_task "
                                                           f"task_id={before.celery_task_id}") and
               processes.log("worker").count(f"task_id={before.celery_task_id}") >= 5, 20,
               message="the redelivered task to run")
    after = GenerationJob.objects.get(pk=job.pk)
    assert (after.status, after.seq, after.updated_at, after.result) == (
        before.status, before.seq, before.updated_at, before.result)


def test_worker_jobs__transient_error_is_retried_with_backoff_then_succeeds(processes, short_limits, backend):
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, **LIMITS)
    job = create_job("image_generation", ("Morning [flaky:2] fog.", "Noon sun."))

    done = wait_status(job, states.TERMINAL, timeout=60)

    assert done.status == states.COMPLETED, done.error_message
    assert backend.count("[flaky:2]") == 3  # two 503s, then the answer
    log = processes.log("worker")
    assert log.count("signal=task_retry task=jobs.tasks.generate_images_task") == 2
    assert "retry 1 of 3" in log and "retry 2 of 3" in log
    # The retries were of the flaky scene alone: the other scene was asked for and rendered once
    assert backend.count("Noon sun") == 1
    noon = SceneCheckpoint.objects.get(job=done, scene=2, kind="image")
    assert (noon.state, noon.renders, noon.attempt, noon.reused) == (SceneCheckpoint.DONE, 1, 1, False)


def test_worker_jobs__permanent_error_fails_at_once_with_a_clear_message(processes, short_limits, backend):
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, **LIMITS)
    job = create_job("image_generation", ("A [perm] scene.", "Another."))

    done = wait_status(job, states.TERMINAL, timeout=60)

    assert done.status == states.FAILED
    assert done.error_message == "Scene 1: The image generator (Stable Diffusion) rejected the request (HTTP 400)"
    assert backend.count("[perm]") == 1
    assert "task_retry" not in processes.log("worker")


def test_worker_jobs__retries_exhausted_fail_with_the_last_message(processes, short_limits, backend):
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, **LIMITS)
    job = create_job("image_generation", ("The [down] server.", "Another."))

    done = wait_status(job, states.TERMINAL, timeout=60)

    assert done.status == states.FAILED
    assert done.error_message == "Scene 1: The image generator (Stable Diffusion) is unavailable (HTTP 503)"
    assert backend.count("[down]") == 1 + 3  # first try and RETRY_MAX retries
    assert "Traceback" not in done.error_message


def test_worker_jobs__soft_time_limit_fails_the_job_as_timed_out(processes, short_limits, backend):
    short_limits.JOBS = {**short_limits.JOBS, "TIME_LIMIT_S": {**short_limits.JOBS["TIME_LIMIT_S"],
                                                               "image_generation": 4}}
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, PIPELINE_BACKEND_TIMEOUT="60", **LIMITS)
    job = create_job("image_generation", ("It [hang]s.", "Never reached."))

    done = wait_status(job, states.TERMINAL, timeout=30)

    assert done.status == states.FAILED
    assert done.error_message == "timed out after 3 s"


def test_worker_jobs__cancel_while_queued_never_starts(processes, short_limits):
    job = create_job("image_generation")  # dispatched, but no worker consumes yet
    task_id = GenerationJob.objects.get(pk=job.pk).celery_task_id

    services.job_cancel(job_id=job.pk)
    processes.start_worker(concurrency=1, **LIMITS)
    wait_until(lambda: f"signal=task_postrun task=jobs.tasks.parse_script_task task_id={task_id}"
               in processes.log("worker"), 30, message="the cancelled job's task to be consumed")

    done = GenerationJob.objects.get(pk=job.pk)
    assert done.status == states.CANCELLED and done.started_at is None
    assert [e.status for e in events(done)] == ["queued", "cancelled"]


def test_worker_jobs__cancel_while_processing_stops_the_stage_cleanly(processes, short_limits, backend):
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, **LIMITS)
    texts = tuple(f"Slow [slow:0.7] scene {n}." for n in range(8))
    job = create_job("image_generation", texts)
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).progress > 20, 30, message="progress")

    cancelled_at = time.monotonic()
    services.job_cancel(job_id=job.pk)
    attempt = GenerationJob.objects.get(pk=job.pk).attempts

    # Every scene task sees the cancel at its next check and finishes its lease well within the grace period.
    wait_until(lambda: (held := leases.stage_leases(job.pk, attempt, "images"))
               and all(lease.state == leases.DONE for lease in held), 10, message="the images stage to stop")
    assert time.monotonic() - cancelled_at < 3.0
    time.sleep(1.0)
    done = GenerationJob.objects.get(pk=job.pk)
    assert done.status == states.CANCELLED and done.result is None
    assert backend.count("[slow:0.7]") < len(texts)


def test_worker_jobs__stage_ignoring_cancel_is_terminated_after_grace_and_worker_stays_healthy(
        processes, short_limits, backend):
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, PIPELINE_BACKEND_TIMEOUT="60", **LIMITS)
    job = create_job("image_generation", ("Cancel me, I [hang].", "Never reached."))
    wait_until(lambda: backend.count("Cancel me, I [hang]") == 1, 30, message="the stage to block in the backend")
    attempt = GenerationJob.objects.get(pk=job.pk).attempts
    holder = next(lease for lease in leases.stage_leases(job.pk, attempt, "images") if lease.state == leases.RUNNING)

    services.job_cancel(job_id=job.pk)

    def holder_gone() -> bool:
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(holder_gone, 3 + 10, message="the blocked pool process to be terminated")
    assert GenerationJob.objects.get(pk=job.pk).status == states.CANCELLED
    # The same worker still runs the next job.
    second = create_job("image_generation")
    assert wait_status(second, states.TERMINAL, timeout=40).status == states.COMPLETED
    assert GenerationJob.objects.get(pk=job.pk).status == states.CANCELLED
    assert processes.procs["worker"].poll() is None


def test_worker_jobs__full_video_stage_failure_fails_the_job_once_and_stops_the_other_branch(
        processes, short_limits, backend):
    processes.start_worker(concurrency=2, SD_API_URL=backend.url, **LIMITS)
    # The image branch fails on its first scene; the narration branch has 45 long scenes to speak, so
    # however the two tasks are scheduled it is either still running (and must stop early) or not yet
    # started (and must do nothing) when the job fails.
    long_text = "A long narrated scene with many words to speak, slowly and clearly, about the sea. " * 3
    texts = ("Broken [perm] picture.",) + tuple(f"Part {n}: {long_text}" for n in range(44))
    job = create_job("full_video", texts)

    wait_status(job, states.TERMINAL, timeout=60)
    time.sleep(2.0)  # let the narration branch and the chord's assembly run into the failed job

    final = GenerationJob.objects.get(pk=job.pk)
    assert final.status == states.FAILED
    assert final.error_message == "Scene 1: The image generator (Stable Diffusion) rejected the request (HTTP 400)"
    assert [e.status for e in events(final) if e.kind == "status"] == ["queued", "processing", "failed"]
    # The other branch stopped early: the narration scene tasks after the failure did nothing, so not all
    # 45 scenes were narrated, and nothing was assembled.
    narrated = SceneCheckpoint.objects.filter(job=final, kind="audio", state=SceneCheckpoint.DONE).count()
    assert narrated < len(texts), narrated
    assert final.result is None
    assert "signal=task_prerun task=jobs.tasks.assemble_video_task" not in processes.log("worker")
