"""Per-scene tasks on real workers: spread over the image pool, reused across attempts, announced live.

Scene images come from the fake Stable Diffusion backend (tests/e2e/fake_backend.py), whose `[slow:S]` marker
makes each scene take a while and whose flat colour per prompt lets the video's frames be matched to scenes.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient
from websockets.asyncio.client import connect

from jobs import leases, queues, services, states
from jobs.models import GenerationJob, JobEvent, SceneCheckpoint
from jobs.locations import attempt_prefix, url_key
from jobs.pipeline import StageFiles, load_scenes, probe_duration
from jobs.pipeline.media import ffmpeg_exe
from jobs.store import get_store
from tests.e2e.fake_backend import script
from tests.factories import make_project, make_user
from tests.processes import kill_stage_holder, wait_until

from .test_ws_stream import receive_json, token_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMITS = {
    "JOBS_HEARTBEAT_INTERVAL_S": "0.5",
    "JOBS_STALE_AFTER_S": "3",
    "JOBS_REAPER_INTERVAL_S": "1",
    "JOBS_CANCEL_GRACE_S": "3",
    "JOBS_MAX_ATTEMPTS": "5",
}
SMALL = {"width": 160, "height": 90, "fps": 5}
NOT_IMAGES = ",".join(q for q in queues.ALL if q != queues.IMAGE)


def new_job(texts: tuple[str, ...], job_type: str = "full_video") -> GenerationJob:
    project = make_project(owner=make_user(), script=script(*texts))
    return services.job_create(project=project, job_type=job_type, params=SMALL if job_type == "full_video" else {})


def wait_status(job: GenerationJob, wanted: set[str] | frozenset[str], timeout: float = 120.0) -> GenerationJob:
    return wait_until(lambda: (j := GenerationJob.objects.get(pk=job.pk)).status in wanted and j, timeout,
                      message=f"job {job.pk} to become {set(wanted)}")


def artifact_events(job: GenerationJob, attempt: int, word: str) -> set[tuple[str, int]]:
    """(kind, scene) of the attempt's artifact events whose message says `word` (rendered | reused)."""
    found = JobEvent.objects.filter(job=job, kind=JobEvent.ARTIFACT, attempt=attempt, message__contains=word)
    return {(e.data["kind"], e.data["scene"]) for e in found}


def file_digests(job: GenerationJob, keys: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """sha256 of the stored object of each (kind, scene) checkpoint."""
    store = get_store()
    return {(r.kind, r.scene): hashlib.sha256(store.read_bytes(r.name)).hexdigest()
            for r in SceneCheckpoint.objects.filter(job=job) if (r.kind, r.scene) in keys}


def every_scene(count: int) -> set[tuple[str, int]]:
    return {(kind, n) for kind in ("image", "audio") for n in range(1, count + 1)}


def artifact_urls(job: GenerationJob, kind: str) -> list[str]:
    return [a["url"] for a in job.result["artifacts"] if a["kind"] == kind]


def wait_half_the_images(job: GenerationJob) -> None:
    wait_until(lambda: SceneCheckpoint.objects.filter(job=job, kind="image", state="done").count() >= 5, 60,
               interval=0.05, message="half the images")


def assert_second_attempt_reused(done: GenerationJob, reused: set[tuple[str, int]],
                                 kept: dict[tuple[str, int], str]) -> None:
    """The job completed on its second attempt, which reused `reused` and left the stored files of `kept`
    (file_digests before the fault) byte for byte as they were."""
    assert done.status == states.COMPLETED, done.error_message
    assert artifact_events(done, 2, "reused") == reused
    assert file_digests(done, set(kept)) == kept


async def receive_until_final(socket: Any, deadline: float) -> list[dict]:
    """Every message up to and including the one with a terminal status."""
    received: list[dict] = []
    while not received or received[-1].get("status") not in states.TERMINAL:
        received.append(await receive_json(socket, deadline))
    return received


def frame_color(video: Path, at_s: float) -> tuple[int, int, int]:
    """The mean colour of the video's frame at `at_s` seconds."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{at_s:.3f}", "-i", str(video), "-frames:v", "1",
                          "-vf", "scale=1:1:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=30).stdout
    return raw[0], raw[1], raw[2]


def assert_complete_video(job: GenerationJob, tmp: Path) -> None:
    """The video lasts as long as the scenes, and shows each scene's image during that scene, in order."""
    from PIL import Image

    store = get_store()
    scenes = load_scenes(StageFiles(store, attempt_prefix(job.pk, job.attempts), tmp))
    (video_url,) = artifact_urls(job, "video")
    video = store.download(url_key(job.pk, video_url), tmp / "video.mp4")
    assert abs(probe_duration(video) - sum(s.duration_s for s in scenes)) < 0.5
    images = {row.scene: row.name for row in SceneCheckpoint.objects.filter(job=job, kind="image")}
    start = 0.0
    for scene in scenes:
        picture = Image.open(io.BytesIO(store.read_bytes(images[scene.index]))).convert("RGB")
        expected = picture.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # its mean colour
        got = frame_color(video, start + scene.duration_s / 2)
        assert all(abs(a - b) <= 24 for a, b in zip(got, expected)), (scene.index, got, expected)
        start += scene.duration_s


def start_pools(processes, backend, *, image_workers: int = 1) -> None:
    env = {**LIMITS, "SD_API_URL": backend.url}
    for n in range(image_workers):  # one pool process each, kept all along: its pid names the worker
        processes.start_worker(f"images-{n}", queues=queues.IMAGE, concurrency=1, wait=False,
                               CELERY_WORKER_MAX_TASKS_PER_CHILD="1000", **env)
    processes.start_worker("others", queues=NOT_IMAGES, concurrency=2, wait=False, **env)
    processes.wait_ready()


def test_scenes__twenty_scenes_run_on_two_image_workers_at_once_and_the_video_has_them_in_order(processes, backend, tmp_path):
    # given two image workers (one process each) and a 20-scene full video whose images take 0.3 s each
    start_pools(processes, backend, image_workers=2)
    job = new_job(tuple(f"Harbour [slow:0.3] view number {n}." for n in range(20)))

    # when it runs
    done = wait_status(job, states.TERMINAL)

    # then both image workers rendered scenes, at the same time (the tasks record their run intervals)
    assert done.status == states.COMPLETED, done.error_message
    images = list(SceneCheckpoint.objects.filter(job=job, kind="image").order_by("scene"))
    assert [row.scene for row in images] == list(range(1, 21)) and {row.state for row in images} == {"done"}
    assert len({row.worker for row in images}) == 2, {row.worker for row in images}
    overlapping = [(a.scene, b.scene) for a in images for b in images if a.worker != b.worker
                   and a.started_at < b.finished_at and b.started_at < a.finished_at]
    assert overlapping, [(r.scene, r.worker, r.started_at, r.finished_at) for r in images]
    # and the video holds every scene, in order
    assert [a["scene"] for a in done.result["artifacts"] if a["kind"] == "image"] == list(range(1, 21))
    assert_complete_video(done, tmp_path)


def test_scenes__cancel_at_half_then_retry_renders_only_the_other_half(processes, backend, tmp_path):
    # given a 10-scene full video on one image worker, cancelled once half its images are stored
    start_pools(processes, backend)
    job = new_job(tuple(f"Lighthouse [slow:0.4] beam {n}." for n in range(10)))
    wait_half_the_images(job)
    services.job_cancel(job_id=job.pk)
    cancelled_at = time.monotonic()
    # every running scene task stops within a second (plus the time to notice it here)
    wait_until(lambda: not [lease for stage in ("images", "audio") for lease in leases.stage_leases(job.pk, 1, stage)
                            if lease.state == leases.RUNNING], 5, interval=0.05, message="the scene tasks to stop")
    assert time.monotonic() - cancelled_at < 1.5
    first = artifact_events(job, 1, "rendered")
    kept = file_digests(job, first)
    assert 5 <= len({k for k in first if k[0] == "image"}) < 10

    # when it is retried
    services.job_retry(job_id=job.pk)
    done = wait_status(job, {states.COMPLETED, states.FAILED})

    # then the retry rendered exactly the scenes the first attempt had not, reused the others byte for byte
    assert_second_attempt_reused(done, first, kept)
    assert artifact_events(job, 2, "rendered") == every_scene(10) - first
    for kind, scene in first:  # a reused image was asked of the backend once, by the first attempt
        assert kind != "image" or backend.count(f"beam {scene - 1}.") == 1, scene
    assert_complete_video(done, tmp_path)


def test_scenes__worker_sigkilled_mid_scene_the_next_attempt_renders_only_what_is_missing(processes, backend, tmp_path):
    # given a 10-scene full video whose image worker dies (SIGKILL of the pool process) mid-scene at half
    start_pools(processes, backend)
    job = new_job(tuple(f"Ferry [slow:0.5] crossing {n}." for n in range(10)))
    wait_half_the_images(job)
    killed: set[int] = set()
    wait_until(lambda: kill_stage_holder(job.pk, "images", killed, lambda: True) or killed, 10, interval=0.05,
               message="a running image scene to kill")
    before_kill = {(r.kind, r.scene) for r in SceneCheckpoint.objects.filter(job=job, state="done", attempt=1)}
    kept = file_digests(job, before_kill)

    # when the lost worker is noticed and the job requeued as a new attempt
    done = wait_status(job, {states.COMPLETED, states.FAILED})

    # then that attempt rendered only what the first had not finished, and reused the rest byte for byte
    first, second = artifact_events(job, 1, "rendered"), artifact_events(job, 2, "rendered")
    assert_second_attempt_reused(done, first, kept)
    assert done.attempts == 2 and done.lost_count == 1
    assert before_kill <= first and not first & second and first | second == every_scene(10)
    assert_complete_video(done, tmp_path)


def test_scenes__edit_one_scene_then_rerun_renders_one_image_and_one_narration(processes, tmp_path):
    # given a completed 4-scene full video (built-in cards, no backend)
    processes.start_worker(concurrency=2, **LIMITS)
    job = new_job(("The quay at dawn.", "Nets drying.", "A gull on the mast.", "Evening bells."))
    assert wait_status(job, states.TERMINAL).status == states.COMPLETED
    first_video = artifact_urls(GenerationJob.objects.get(pk=job.pk), "video")

    # when the owner edits scene 3's text and re-runs the job from the parse
    project = job.project
    project.script = script("The quay at dawn.", "Nets drying.", "Two gulls fight over a fish.", "Evening bells.")
    project.save()
    client = APIClient()
    client.force_authenticate(project.owner)
    answer = client.post(f"/api/jobs/{job.pk}/retry/", {"from_stage": "parse"}, format="json")
    assert answer.status_code == 200, answer.content
    done = wait_status(job, states.TERMINAL)

    # then exactly one image and one narration were rendered again, the rest reused
    assert done.status == states.COMPLETED and done.attempts == 2, done.error_message
    assert artifact_events(job, 2, "rendered") == {("image", 3), ("audio", 3)}
    assert artifact_events(job, 2, "reused") == every_scene(4) - {("image", 3), ("audio", 3)}
    assert artifact_urls(done, "video") != first_video  # a2's video
    assert_complete_video(done, tmp_path)
    # and a re-run from a stage the plan does not have is refused with the field named (a later stage of
    # the plan is fine: tests/e2e/test_rerun.py)
    wrong = client.post(f"/api/jobs/{job.pk}/retry/", {"from_stage": "captions"}, format="json")
    assert wrong.status_code == 400 and "from_stage" in wrong.json(), wrong.content


def test_scenes__websocket_artifact_messages_come_before_completed_and_resume_replays_them(processes):
    # given a running daphne and a full video job watched from its first event
    port = processes.start_daphne()
    user = make_user()
    job = services.job_create(project=make_project(owner=user, script=script("One.", "Two.", "Three.")),
                              job_type="full_video", params=SMALL)
    url = f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/?token={token_for(user)}"

    async def scenario() -> tuple[list[dict], list[dict]]:
        deadline = time.monotonic() + 120
        async with connect(url, open_timeout=10) as socket:
            await receive_json(socket, deadline)  # the snapshot
            await asyncio.to_thread(processes.start_worker, concurrency=2, **LIMITS)
            live = await receive_until_final(socket, deadline)
        async with connect(url, open_timeout=10) as socket:
            await receive_json(socket, deadline)
            await socket.send(json.dumps({"type": "resume", "after_seq": 1}))
            replayed = await receive_until_final(socket, deadline)
        return live, replayed

    live, replayed = asyncio.run(scenario())

    # then every scene's image and narration was announced before the completed status, in seq order
    assert live[-1]["status"] == states.COMPLETED
    artifacts = [m for m in live if m["type"] == "artifact"]
    assert sorted((m["kind"], m["scene"]) for m in artifacts) == sorted(every_scene(3))
    assert all(set(m) == {"type", "job_id", "seq", "kind", "name", "url", "scene", "reused"} for m in artifacts)
    assert all(m["url"].startswith(f"/api/jobs/{job.pk}/artifacts/") and m["reused"] is False for m in artifacts)
    seqs = [m["seq"] for m in live]
    assert seqs == list(range(2, 2 + len(seqs)))
    # and `resume` replays the very same messages (the artifacts included) in the same order
    assert replayed == live
