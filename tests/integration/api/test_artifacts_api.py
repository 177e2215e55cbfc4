"""Artifact files: owner only, right content type, HTTP range requests, no way out of the job's folder."""
from __future__ import annotations

import pytest

from jobs import services
from tests.factories import make_job, make_project
from tests.responses import response_body

from .conftest import token_client

pytestmark = pytest.mark.django_db

VIDEO = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def completed(user, settings):
    project = make_project(owner=user)
    job = make_job(project=project, job_type="full_video")
    folder = settings.MEDIA_ROOT / "jobs" / str(job.pk)
    (folder / "images").mkdir(parents=True)
    (folder / "video.mp4").write_bytes(VIDEO)
    (folder / "images" / "scene_001.png").write_bytes(b"\x89PNG fake")
    (folder / ".video.ab12.partial").write_bytes(b"half")
    (settings.MEDIA_ROOT / "secret.txt").write_bytes(b"secret")
    services.job_start(job_id=job.pk)
    services.job_complete(job_id=job.pk, result={"artifacts": [
        {"kind": "video", "path": "video.mp4", "url": f"/api/jobs/{job.pk}/artifacts/video.mp4",
         "bytes": len(VIDEO), "content_type": "video/mp4"},
    ]})
    return job




def test_artifact__owner_gets_the_file_with_its_content_type(api, completed):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/video.mp4")

    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Accept-Ranges"] == "bytes"
    assert int(response["Content-Length"]) == len(VIDEO)
    assert response_body(response) == VIDEO


def test_artifact__url_in_result_is_served(api, completed):
    url = api.get(f"/api/jobs/{completed.pk}/").json()["result"]["artifacts"][0]["url"]

    assert api.get(url).status_code == 200


def test_artifact__nested_path_and_guessed_type(api, completed):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/images/scene_001.png")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_artifact__media_element_accept_header_is_not_406(api, completed):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/video.mp4", HTTP_ACCEPT="video/webm,video/*;q=0.9")

    assert response.status_code == 200


@pytest.mark.parametrize("header, status, first, last", [
    ("bytes=0-99", 206, 0, 99),
    ("bytes=10000-", 206, 10000, 10239),
    ("bytes=-40", 206, 10200, 10239),
    ("bytes=100-999999", 206, 100, 10239),
])
def test_artifact__range_request_is_206_with_the_bytes(api, completed, header, status, first, last):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/video.mp4", HTTP_RANGE=header)

    assert response.status_code == status
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(VIDEO)}"
    assert int(response["Content-Length"]) == last - first + 1
    assert response_body(response) == VIDEO[first:last + 1]


def test_artifact__range_past_the_end_is_416(api, completed):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/video.mp4", HTTP_RANGE="bytes=20000-")

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(VIDEO)}"


HUGE = "9" * 5000  # past Python's int-from-string limit (4,300 digits): was a 500


@pytest.mark.parametrize("header", ["bytes=5-1", "items=0-1", "bytes=0-1,5-6", "garbage",
                                    f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}", "bytes=99999999999999999999-"])
def test_artifact__unusable_range_is_ignored(api, completed, header):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/video.mp4", HTTP_RANGE=header)

    assert response.status_code == 200
    assert response_body(response) == VIDEO


@pytest.mark.parametrize("path", [
    "../secret.txt", "..%2Fsecret.txt", "images/../../secret.txt", "%2e%2e/secret.txt", ".video.ab12.partial",
    "missing.mp4", "images", "images/", "/etc/passwd", "..", "a%00b",
])
def test_artifact__no_path_leaves_the_jobs_folder(api, completed, path):
    response = api.get(f"/api/jobs/{completed.pk}/artifacts/{path}")

    assert response.status_code == 404
    assert b"secret" not in response_body(response)


def test_artifact__symlink_out_of_the_folder_is_404(api, completed, settings):
    (settings.MEDIA_ROOT / "jobs" / str(completed.pk) / "link.mp4").symlink_to(settings.MEDIA_ROOT / "secret.txt")

    assert api.get(f"/api/jobs/{completed.pk}/artifacts/link.mp4").status_code == 404


def test_artifact__another_user_gets_404(completed, other_user):
    response = token_client(other_user).get(f"/api/jobs/{completed.pk}/artifacts/video.mp4")

    assert response.status_code == 404
    assert response.json()["detail"]


def test_artifact__session_login_works_for_pages(user, completed, client):
    client.force_login(user)

    assert client.get(f"/api/jobs/{completed.pk}/artifacts/video.mp4").status_code == 200
