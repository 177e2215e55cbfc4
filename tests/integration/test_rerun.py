"""Re-running a job from a stage (jobs/rerun.py): what is refused at request time, what the new attempt
records, and the staff admin action and owner page form that ask for it. The runs themselves, on real
workers: tests/e2e/test_rerun.py."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import rerun, retention, services, states
from jobs.locations import attempt_prefix
from jobs.models import GenerationJob, JobEvent
from jobs.pipeline import PermanentError, StageFiles
from jobs.plans import get_plan
from jobs.store import get_store
from tests.doubles import RecordingContext
from tests.factories import make_processing_job, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path


def finished_job(media, *, owner=None, stored: tuple[str, ...] = ("scenes", "image", "audio", "video"),
                 status: str = states.COMPLETED) -> GenerationJob:
    """A full_video job whose attempt 1 ended with `status` after storing the manifests of `stored` kinds."""
    job = make_processing_job(owner=owner or make_user(), job_type="full_video")
    files = StageFiles(get_store(), attempt_prefix(job.pk, 1), media / "scratch")
    for kind in stored:
        files.write_manifest(kind, [])
    if status == states.COMPLETED:
        services.job_complete(job_id=job.pk, result={"artifacts": []})
    else:
        services.job_fail(job_id=job.pk, error_message="the parse stage failed")
    return GenerationJob.objects.get(pk=job.pk)


def post_retry(job: GenerationJob, body: dict):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=job.project.owner)[0].key}")
    return client.post(f"/api/jobs/{job.pk}/retry/", body, format="json")


# --- the API and the service ------------------------------------------------------------------------------

def test_rerun__from_a_later_stage_queues_an_attempt_that_records_its_start_and_source(media) -> None:
    # given a completed full video whose attempt 1 stored every stage's manifest
    job = finished_job(media)
    # when its owner re-runs it from the video stage
    answer = post_retry(job, {"from_stage": "video"})
    # then it is queued as attempt 2, which starts at the video stage and takes the rest from attempt 1
    assert answer.status_code == 200, answer.content
    job.refresh_from_db()
    assert (job.status, job.attempts, job.rerun_from, job.rerun_source) == (states.QUEUED, 2, "video", 1)
    assert job.events.filter(status=states.QUEUED, message="Re-run requested from the video stage").exists()


def test_rerun__a_stage_of_a_parallel_step_is_accepted(media) -> None:
    job = finished_job(media)
    assert post_retry(job, {"from_stage": "audio"}).status_code == 200
    job.refresh_from_db()
    assert (job.rerun_from, job.rerun_source) == ("audio", 1)


def test_rerun__unknown_stage_is_400_naming_from_stage_and_the_plan_stages(media) -> None:
    job = finished_job(media)
    answer = post_retry(job, {"from_stage": "narration"})
    assert answer.status_code == 400 and "from_stage" in answer.json(), answer.content
    assert "parse, images, audio, video" in answer.json()["from_stage"][0]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (states.COMPLETED, 1)


def test_rerun__previous_attempt_failed_in_parse_is_400_naming_from_stage_and_why(media) -> None:
    # given a job whose attempt 1 failed during the parse (no scene list stored)
    job = finished_job(media, stored=(), status=states.FAILED)
    # when its owner asks for a re-run from the images
    answer = post_retry(job, {"from_stage": "images"})
    # then it is refused at once, naming the field and the stage that did not finish
    assert answer.status_code == 400, answer.content
    assert "did not finish the parse stage" in answer.json()["from_stage"][0]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (states.FAILED, 1)
    # and a re-run from the parse itself (nothing before it) is fine
    assert post_retry(job, {"from_stage": "parse"}).status_code == 200


def test_rerun__previous_attempt_without_the_images_cannot_start_at_the_video(media) -> None:
    job = finished_job(media, stored=("scenes",), status=states.FAILED)
    answer = post_retry(job, {"from_stage": "video"})
    assert answer.status_code == 400 and "did not finish the images stage" in answer.json()["from_stage"][0]


def test_rerun__unfinished_job_is_409_and_an_external_one_too(media) -> None:
    running = make_processing_job(job_type="full_video")
    assert post_retry(running, {"from_stage": "video"}).status_code == 409
    external = services.JobService.create_job(running.project_id, "full_video", celery_task_id="their-task")
    services.job_cancel(job_id=external.pk)
    answer = post_retry(GenerationJob.objects.get(pk=external.pk), {"from_stage": "parse"})
    assert answer.status_code == 409 and "celery_task_id" in answer.json()["detail"]


def test_rerun__a_plain_retry_afterwards_starts_from_the_first_stage_again(media) -> None:
    # given a re-run from the video, cancelled before it ran
    job = finished_job(media)
    services.job_retry(job_id=job.pk, from_stage="video")
    services.job_cancel(job_id=job.pk)
    # when it is retried plainly
    again = services.job_retry(job_id=job.pk)
    # then the new attempt runs every stage
    again.refresh_from_db()
    assert (again.attempts, again.rerun_from, again.rerun_source) == (3, "", None)


def test_rerun__cancelled_before_it_copied_anything_can_be_asked_for_again(media) -> None:
    # given a re-run from the video, cancelled before its attempt (2) stored anything
    job = finished_job(media)
    services.job_retry(job_id=job.pk, from_stage="video")
    services.job_cancel(job_id=job.pk)
    # when it is asked for again, from the video or an earlier stage it took from attempt 1 too
    again = services.job_retry(job_id=job.pk, from_stage="video")
    # then the new attempt takes them from attempt 1, which stored them
    assert (again.attempts, again.rerun_from, again.rerun_source) == (3, "video", 1)
    services.job_cancel(job_id=job.pk)
    assert services.job_retry(job_id=job.pk, from_stage="images").rerun_source == 1


def test_rerun__a_later_start_than_the_cancelled_rerun_needs_its_own_outputs(media) -> None:
    # given a re-run from the images, cancelled before it finished them (it had copied the scene list)
    job = finished_job(media)
    services.job_retry(job_id=job.pk, from_stage="images")
    StageFiles(get_store(), attempt_prefix(job.pk, 2), media / "scratch").write_manifest("scenes", [])
    services.job_cancel(job_id=job.pk)
    # when a re-run from the video is asked for, it is refused: attempt 2 was making the images again
    answer = post_retry(GenerationJob.objects.get(pk=job.pk), {"from_stage": "video"})
    assert answer.status_code == 400 and "attempt 2 did not finish the images stage" in answer.json()["from_stage"][0]
    # and one from the images takes the scene list attempt 2 copied
    assert services.job_retry(job_id=job.pk, from_stage="images").rerun_source == 2


def test_rerun__a_requeue_after_a_lost_worker_keeps_the_start_stage(media) -> None:
    # given a re-run from the video whose worker was lost once it had started
    job = finished_job(media)
    services.job_retry(job_id=job.pk, from_stage="video")
    services.job_start(job_id=job.pk, worker="doomed", attempt=2)
    services.job_record_lost_worker(job_id=job.pk, attempt=2, reason="worker lost")
    # then the requeued attempt starts at the same stage, from the same source attempt
    job.refresh_from_db()
    assert (job.status, job.attempts, job.rerun_from, job.rerun_source) == (states.QUEUED, 3, "video", 1)


# --- the worker's copy -------------------------------------------------------------------------------------

@pytest.fixture(params=["local", "s3"])
def any_store(request, media):
    if request.param == "s3":
        request.getfixturevalue("s3")
    return get_store()


def test_carry_over__copies_the_stage_into_the_new_attempt_and_records_it_reused(any_store, media) -> None:
    # given a completed full video whose attempt 1 stored its scene list, re-run from the images (attempt 2 running)
    job = make_processing_job(job_type="full_video")
    first = StageFiles(any_store, attempt_prefix(job.pk, 1), media / "scratch")
    stored = first.save_bytes("scenes.json", b'{"scenes": []}', "scenes", "application/json", {"count": 0})
    first.write_manifest("scenes", [stored])
    services.job_complete(job_id=job.pk, result={"artifacts": []})
    services.job_retry(job_id=job.pk, from_stage="images")
    job = services.job_start(job_id=job.pk, worker="w", attempt=2)
    assert job is not None and rerun.reuses(job, "parse") and not rerun.reuses(job, "images")
    # when attempt 2's parse task carries the stage over instead of running it
    second = first.with_prefix(attempt_prefix(job.pk, 2))
    ctx = RecordingContext()
    copied = rerun.carry_over(job, 2, get_plan("full_video").stage("parse"), second, ctx)
    # then the scene list and its manifest are attempt 2's own, byte for byte, and survive attempt 1's cleanup
    assert [a.key for a in copied] == [f"{attempt_prefix(job.pk, 2)}/scenes.json"]
    assert second.load_artifacts("scenes") == copied
    retention.drop_other_attempts(job.pk, 2, {"artifacts": []})
    assert not any_store.exists(stored.key) and any_store.read_bytes(copied[0].key) == b'{"scenes": []}'
    # and the attempt's events say the stage was reused, its progress reached the end of the stage
    event = JobEvent.objects.get(job=job, attempt=2, kind=JobEvent.ARTIFACT)
    assert event.data == {"kind": "scenes", "name": "scenes.json", "reused": True, "scene": None,
                          "url": f"/api/jobs/{job.pk}/artifacts/a2/scenes.json"}
    assert "reused from attempt 1" in event.message
    assert ctx.reports[-1][0] == 100.0


def test_carry_over__a_stage_deleted_since_the_request_fails_the_attempt_saying_so(media) -> None:
    # given a re-run from the images whose source attempt's files were deleted after it was asked for
    job = finished_job(media)
    services.job_retry(job_id=job.pk, from_stage="images")
    get_store().delete_prefix(attempt_prefix(job.pk, 1))
    job = services.job_start(job_id=job.pk, worker="w", attempt=2)
    # when its parse task carries the stage over, it fails with a reason the owner can act on
    second = StageFiles(get_store(), attempt_prefix(job.pk, 2), media / "scratch")
    with pytest.raises(PermanentError, match="parse stage of attempt 1 is no longer stored; re-run from an earlier"):
        rerun.carry_over(job, 2, get_plan("full_video").stage("parse"), second, RecordingContext())


# --- the admin action -------------------------------------------------------------------------------------

def test_admin__rerun_from_a_stage_asks_for_the_stage_then_requeues_through_the_service(client, media) -> None:
    # given staff, a completed job and one whose attempt failed in the parse
    client.force_login(make_user(staff=True))
    done = finished_job(media)
    failed = finished_job(media, stored=(), status=states.FAILED)
    url = reverse("admin:jobs_generationjob_changelist")
    ids = [str(done.pk), str(failed.pk)]
    # when they choose the action, the intermediate page offers the plan's steps
    page = client.post(url, {"action": "rerun_from_stage", "_selected_action": ids})
    html = page.content.decode()
    assert page.status_code == 200 and 'name="from_stage"' in html
    assert '<option value="images">images + audio</option>' in html and '<option value="video">video</option>' in html
    # and confirming re-runs each job from that stage, reporting what was skipped and why
    answer = client.post(url, {"action": "rerun_from_stage", "_selected_action": ids, "apply": "1",
                               "from_stage": "video"}, follow=True)
    text = answer.content.decode()
    assert "1 job re-queued from the video stage. 1 skipped (" in text and "did not finish the parse stage" in text
    done.refresh_from_db(), failed.refresh_from_db()
    assert (done.status, done.attempts, done.rerun_from, done.rerun_source) == (states.QUEUED, 2, "video", 1)
    assert (failed.status, failed.rerun_from) == (states.FAILED, "")


# --- the owner's job page ---------------------------------------------------------------------------------

def job_path(job: GenerationJob) -> str:
    return reverse("job-detail", kwargs={"job_id": job.pk})


def test_job_detail__finished_job_offers_rerun_from_each_step_and_the_post_requeues_it(client, media) -> None:
    # given the owner of a completed full video on its page
    owner = make_user()
    job = finished_job(media, owner=owner)
    client.force_login(owner)
    html = client.get(job_path(job)).content.decode()
    form = html.split('id="job-rerun"', 1)[1].split("</form>", 1)[0]
    assert ' hidden' not in form.split(">", 1)[0]
    assert [part.split('"')[1] for part in form.split("<option value=")[1:]] == ["parse", "images", "video"]
    # when they re-run it from the images
    answer = client.post(job_path(job), {"action": "rerun", "from_stage": "images"})
    # then it is queued again, starting at the images with attempt 1's scene list
    assert answer.status_code == 302
    job.refresh_from_db()
    assert (job.status, job.attempts, job.rerun_from, job.rerun_source) == (states.QUEUED, 2, "images", 1)
    # and the queued job's form is hidden until it finishes
    again = client.get(job_path(job)).content.decode()
    assert 'data-field="rerun" hidden>' in again


def test_job_detail__a_refused_rerun_is_shown_as_a_page_message(client, media) -> None:
    owner = make_user()
    job = finished_job(media, owner=owner, stored=(), status=states.FAILED)
    client.force_login(owner)
    answer = client.post(job_path(job), {"action": "rerun", "from_stage": "video"}, follow=True)
    assert "did not finish the parse stage" in answer.content.decode()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (states.FAILED, 1)


def test_job_detail__another_users_job_cannot_be_rerun(client, media) -> None:
    job = finished_job(media)
    client.force_login(make_user())
    assert client.post(job_path(job), {"action": "rerun", "from_stage": "video"}).status_code == 404
    job.refresh_from_db()
    assert (job.status, job.attempts, job.rerun_from) == (states.COMPLETED, 1, "")
