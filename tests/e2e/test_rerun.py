"""Re-running a completed job from a later stage on real workers: the stages before it are taken from the
previous attempt (copied, their events say `reused`), never run again; the stage and those after it run."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from jobs import services, states
from jobs.locations import attempt_prefix
from jobs.models import GenerationJob, SceneCheckpoint
from jobs.pipeline import StageFiles, load_scenes
from jobs.store import get_store
from projects.models import Project
from tests.e2e.fake_backend import script
from tests.processes import kill_stage_holder, wait_until

from .test_scenes import (LIMITS, artifact_events, artifact_urls, assert_complete_video, every_scene, new_job,
                          start_pools, wait_status)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TEXTS = ("The quay at dawn.", "Nets drying.", "A gull on the mast.", "Evening bells.")
SCENE_LIST = {("scenes", None)}  # the copied parse's artifact event: scenes.json, no scene number


def scene_texts(job: GenerationJob, attempt: int, tmp) -> list[str]:
    return [scene.text for scene in load_scenes(StageFiles(get_store(), attempt_prefix(job.pk, attempt), tmp))]


def rerun(client: APIClient, job: GenerationJob, stage: str) -> GenerationJob:
    answer = client.post(f"/api/jobs/{job.pk}/retry/", {"from_stage": stage}, format="json")
    assert answer.status_code == 200, answer.content
    return wait_status(job, states.TERMINAL)


def test_rerun__from_the_video_then_from_the_images_renders_nothing_again_and_keeps_the_scene_list(processes, tmp_path):
    # given a completed 4-scene full video (built-in cards), whose script the owner then edits
    processes.start_worker(concurrency=2, **LIMITS)
    job = new_job(TEXTS)
    assert wait_status(job, states.TERMINAL).status == states.COMPLETED
    first_video = artifact_urls(GenerationJob.objects.get(pk=job.pk), "video")
    project = job.project
    project.script = script("The quay at dawn.", "Nets drying.", "Two gulls fight over a fish.", "Evening bells.")
    project.save()
    client = APIClient()
    client.force_authenticate(project.owner)

    # when the owner re-runs it from the video stage
    done = rerun(client, job, "video")

    # then attempt 2 rendered no image or narration and did not parse again: the scene list (and so the scene
    # 3 text) is attempt 1's, copied, and every earlier artifact was reused
    assert done.status == states.COMPLETED and done.attempts == 2, done.error_message
    assert (done.rerun_from, done.rerun_source) == ("video", 1)
    assert artifact_events(done, 2, "rendered") == set()
    assert artifact_events(done, 2, "reused") == every_scene(4) | SCENE_LIST
    assert scene_texts(done, 2, tmp_path)[2] == "A gull on the mast."
    # and a new video was assembled from them, whole
    assert artifact_urls(done, "video") != first_video
    assert_complete_video(done, tmp_path)
    # and attempt 1's scene list is gone (earlier attempts' unused files are dropped): attempt 2 has a copy
    assert not get_store().exists(f"{attempt_prefix(job.pk, 1)}/scenes.json")

    # when it is re-run once more, from the images
    again = rerun(client, job, "images")

    # then attempt 3 took the scene list from attempt 2 and reused every scene again: nothing rendered
    assert again.status == states.COMPLETED and again.attempts == 3, again.error_message
    assert (again.rerun_from, again.rerun_source) == ("images", 2)
    assert artifact_events(again, 3, "rendered") == set()
    assert artifact_events(again, 3, "reused") == every_scene(4) | SCENE_LIST
    assert scene_texts(again, 3, tmp_path) == list(TEXTS)
    assert_complete_video(again, tmp_path)


def test_rerun__after_a_failed_parse_only_the_parse_can_start_a_rerun(processes):
    # given a full video whose script was emptied before a worker parsed it: attempt 1 failed in the parse
    job = new_job(TEXTS)
    Project.objects.filter(pk=job.project_id).update(script="")
    processes.start_worker(concurrency=2, **LIMITS)
    assert wait_status(job, states.TERMINAL).status == states.FAILED
    client = APIClient()
    client.force_authenticate(job.project.owner)

    # when the owner asks for a re-run from the images, then the video
    for stage in ("images", "video"):
        answer = client.post(f"/api/jobs/{job.pk}/retry/", {"from_stage": stage}, format="json")
        # then it is refused at once, naming the field and why: there is no scene list to start from
        assert answer.status_code == 400, answer.content
        assert "did not finish the parse stage" in answer.json()["from_stage"][0]
    assert GenerationJob.objects.get(pk=job.pk).attempts == 1
    # and a re-run from the parse, with the script restored, completes
    Project.objects.filter(pk=job.project_id).update(script=script(*TEXTS))
    assert client.post(f"/api/jobs/{job.pk}/retry/", {"from_stage": "parse"}, format="json").status_code == 200
    assert wait_status(job, states.TERMINAL).status == states.COMPLETED


def test_rerun__from_the_images_after_retention_and_a_lost_worker_renders_the_deleted_images_and_keeps_its_start(
        processes, backend, tmp_path):
    # given a completed 6-scene full video whose image files retention then deleted (the narration is kept)
    start_pools(processes, backend)
    texts = tuple(f"Ferry [slow:0.4] crossing {n}." for n in range(6))
    job = new_job(texts)
    assert wait_status(job, states.TERMINAL).status == states.COMPLETED
    store = get_store()
    store.delete([row.name for row in SceneCheckpoint.objects.filter(job=job, kind="image")])

    # when it is re-run from the images and the image worker is SIGKILLed during that attempt's first scene
    services.job_retry(job_id=job.pk, from_stage="images")
    killed: set[int] = set()
    wait_until(lambda: kill_stage_holder(job.pk, "images", killed, lambda: True) or killed, 30, interval=0.05,
               message="a running image scene of the re-run to kill")
    done = wait_status(job, states.TERMINAL)

    # then the requeued attempt (3) kept the start stage and its source, took the scene list from attempt 1
    # again, reused the narration and rendered the images that were still missing
    assert done.status == states.COMPLETED and done.attempts == 3 and done.lost_count == 1, done.error_message
    assert (done.rerun_from, done.rerun_source) == ("images", 1)
    reused = artifact_events(done, 3, "reused")
    assert SCENE_LIST | {("audio", n) for n in range(1, 7)} <= reused
    images = {("image", n) for n in range(1, 7)}
    assert artifact_events(done, 2, "rendered") | artifact_events(done, 3, "rendered") == images
    assert scene_texts(done, 3, tmp_path) == list(texts)
    assert_complete_video(done, tmp_path)
