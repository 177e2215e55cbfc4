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
