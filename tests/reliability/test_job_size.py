"""Job size limits at create: a script too long to narrate, a scene too long, a video too large → 400 naming
the limit; staff change a limit in the admin and the next create follows it.
"""
from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import GenerationJob
from tests.factories import make_project, make_user

pytestmark = [pytest.mark.reliability, pytest.mark.django_db]


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _create(script: str, job_type: str = "full_video", params: dict | None = None):
    user = make_user()
    project = make_project(owner=user, script=script)
    body = {"project_id": str(project.pk), "job_type": job_type, "params": params or {}}
    return _client(user).post("/api/jobs/", body, format="json")


def _paragraphs(count: int, words: int) -> str:
    return "\n\n".join(" ".join(["a"] * words) for _ in range(count))


def test_job_size__fifty_thousand_word_script_is_400_naming_the_limit():
    # Given the probe: 50,000 words (within the 100,000-character script limit), about 5.5 hours
    # of narration at 150 words per minute
    script = " ".join(["a"] * 50_000)

    # When a full video and a narration of it are asked for
    for job_type in ("full_video", "audio_generation"):
        response = _create(script, job_type)

        # Then each is refused with a 400 naming the limit, and no job exists
        assert response.status_code == 400, response.content[:300]
        assert "JOB_MAX_SCENE_S" in response.json()["script"][0]
    assert not GenerationJob.objects.exists()


def test_job_size__total_duration_over_limit_is_400():
    # Given 40 scenes of 100 words: 40 s each, 1,600 s in all
    response = _create(_paragraphs(40, 100))

    assert response.status_code == 400
    assert "JOB_MAX_DURATION_S" in response.json()["script"][0]


def test_job_size__pixels_over_limit_is_400_and_smaller_video_is_created():
    # Given 10 scenes of 250 words at 250 wpm: 600 s, within the duration limits
    script = _paragraphs(10, 250)

    # When asked for 1080p at 60 fps (1920 × 1080 × 60 × 600 pixels), then for 720p at 24 fps
    big = _create(script, params={"width": 1920, "height": 1080, "fps": 60, "rate_wpm": 250})
    small = _create(script, params={"width": 1280, "height": 720, "fps": 24, "rate_wpm": 250})

    # Then the large one is a 400 naming the limit and the small one is created
    assert big.status_code == 400 and "JOB_MAX_VIDEO_PIXELS" in big.json()["params"][0]
    assert small.status_code == 201, small.content[:300]


def test_job_size__image_generation_has_no_duration_limit():
    response = _create(_paragraphs(40, 100), "image_generation")

    assert response.status_code == 201, response.content[:300]


def test_job_size__staff_lower_a_limit_in_the_admin(client):
    # Given a 10-scene script of 60 s (within the default limits) and staff signed in to the admin
    script = _paragraphs(10, 15)
    assert _create(script).status_code == 201
    staff = make_user(staff=True)
    client.force_login(staff)

    # When staff set the job limit to 30 s on the constance admin page
    page = client.get("/admin/constance/config/")
    assert page.status_code == 200
    form = page.context["form"]
    data = {name: form.initial[name] for name in form.fields if name in form.initial}
    data["JOB_MAX_DURATION_S"] = 30
    saved = client.post("/admin/constance/config/", data)
    assert saved.status_code == 302, saved.content[:500]

    # Then the same script is refused, naming the limit and its new value
    refused = _create(script)
    assert refused.status_code == 400
    assert "JOB_MAX_DURATION_S is 30 s" in refused.json()["script"][0]


# --- bounded memory while the largest job runs ----------------------------------------------------------

# One scene of an hour of narration: 30x the default scene limit, so that a stage holding a scene (or
# the joined narration) in memory would show as 150+ MB of 16-bit samples; the video is tiny (64x64 at
# 1 fps) so the run stays short. The worker's pool child may grow by at most this much while it runs it.
LONG_SCENE_S = 3600
POOL_CHILD_GROWTH_LIMIT = 40 * 1024 * 1024


def _pool_child_rss(worker_pid: int) -> int:
    """RSS of the worker's pool children (not ffmpeg, whose memory is its own)."""
    import psutil

    total = 0
    for child in psutil.Process(worker_pid).children():
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _run_watching_rss(job, worker_pid: int, timeout: float) -> tuple[GenerationJob, int]:
    """Wait for the job to end, sampling the pool child's RSS every 20 ms; the job and the peak RSS."""
    import time

    from jobs import states

    peak, deadline, checked = 0, time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        peak = max(peak, _pool_child_rss(worker_pid))
        if time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            current = GenerationJob.objects.get(pk=job.pk)
            if current.status in states.TERMINAL:
                return current, peak
        time.sleep(0.02)
    raise AssertionError(f"job {job.pk} did not finish within {timeout} s")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_job_size__an_hour_long_scene_is_narrated_and_encoded_in_bounded_worker_memory(processes):
    from constance import config

    from jobs import services

    # Given limits raised to allow one hour-long scene, and a worker using the tone narration
    config.JOB_MAX_SCENE_S = LONG_SCENE_S
    config.JOB_MAX_DURATION_S = LONG_SCENE_S
    processes.start_worker(concurrency=1, PIPELINE_AUDIO_ENGINE="tone")
    worker_pid = processes.procs["worker"].pid
    tiny = {"width": 64, "height": 64, "fps": 1, "rate_wpm": 80}
    owner = make_user()
    warm = services.job_create(project=make_project(owner=owner, script="A short warm-up scene."),
                               job_type="full_video", params=tiny)
    assert _run_watching_rss(warm, worker_pid, 120)[0].status == "completed"  # imports, first-task setup
    baseline = _pool_child_rss(worker_pid)

    # When a full video of one scene of 4,800 words at 80 words per minute (one hour) runs
    project = make_project(owner=owner, script=" ".join(["word"] * (LONG_SCENE_S * 80 // 60)))
    job = services.job_create(project=project, job_type="full_video", params=tiny)
    done, peak = _run_watching_rss(job, worker_pid, 280)

    # Then it completes with an hour of video, and the pool child grew by less than the bound
    assert done.status == "completed", done.error_message
    assert done.result["duration_s"] == pytest.approx(LONG_SCENE_S, abs=1)
    print(f"pool child RSS: baseline {baseline / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    assert peak - baseline < POOL_CHILD_GROWTH_LIMIT, (baseline, peak)
