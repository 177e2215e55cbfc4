"""Both slash forms of every path, and every error answered as JSON: never a redirect, never a 500."""
from __future__ import annotations

import pytest

from jobs import services
from tests.factories import make_job, make_project

from .conftest import token_client
from .endpoints import ENDPOINT_NAMES, endpoints

pytestmark = pytest.mark.django_db


@pytest.fixture
def owned(user, settings):
    project = make_project(owner=user)
    job = make_job(project=project)
    services.job_fail(job_id=job.pk, error_message="boom")  # retryable; cancel then answers 409
    folder = settings.MEDIA_ROOT / "jobs" / str(job.pk)
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"v" * 10)
    return project, job


@pytest.mark.parametrize("slash", [True, False])
@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_paths__work_with_and_without_trailing_slash(api, owned, name, slash):
    project, job = owned
    _, method, path, body = next(e for e in endpoints(project.pk, job.pk) if e[0] == name)
    if not slash:
        path = path.rstrip("/")

    response = getattr(api, method)(path, body, format="json") if body else getattr(api, method)(path)

    expected = 409 if name == "job-cancel" else range(200, 300)
    assert response.status_code in (expected if name != "job-cancel" else [expected]), (path, response.content[:200])
    assert response.status_code not in (301, 302, 307, 308)


@pytest.mark.parametrize("path", ["/api/auth/token/", "/api/auth/token"])
def test_paths__token_post_both_forms(user, client, path):
    response = client.post(path, {"username": user.username, "password": "pw-test-123456"},
                           content_type="application/json")

    assert response.status_code == 200 and "token" in response.json()


@pytest.mark.parametrize("path", ["/api/schema/", "/api/schema", "/api/docs/", "/api/docs", "/healthz", "/healthz/"])
def test_paths__schema_docs_health_both_forms(client, path):
    assert client.get(path).status_code in (200, 503)


@pytest.mark.parametrize("path", [
    "/api/jobs/not-a-uuid/", "/api/jobs/123", "/api/jobs/not-a-uuid/cancel/", "/api/jobs/x/events",
    "/api/projects/not-a-uuid/", "/api/projects/%20/", "/api/jobs/x/artifacts/a.mp4",
])
def test_errors__non_uuid_id_is_json_404(api, path):
    response = api.get(path) if "cancel" not in path else api.post(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/jobs/1/2/3/4/", "/api", "/api/"])
def test_errors__unknown_api_path_is_json_404(api, path):
    response = api.post(path, {"x": 1}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_errors__unknown_api_path_is_json_404_even_in_debug(api, settings):
    settings.DEBUG = True

    response = api.get("/api/nothing-here/")

    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize("method, path", [
    ("put", "/api/jobs/"), ("delete", "/api/jobs/"), ("get", "/api/jobs/{job}/cancel/"),
    ("delete", "/api/jobs/{job}/"), ("post", "/api/jobs/{job}/events/"), ("post", "/api/jobs/{job}/artifacts/video.mp4"),
    ("put", "/api/projects/{project}/"), ("get", "/api/auth/token/"), ("post", "/healthz"),
])
def test_errors__wrong_method_is_json_405(api, owned, method, path):
    project, job = owned

    response = getattr(api, method)(path.format(job=job.pk, project=project.pk))

    assert response.status_code == 405
    assert "detail" in response.json()


@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b"\xff\xfe", b"[" * 50000, b'{"name": NaN}',
                                 b'{"name": "\\ud800"}', b"null", b"[]", b'"text"'])
def test_errors__malformed_json_is_400(api, raw):
    response = api.generic("POST", "/api/projects/", raw, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()


def test_errors__malformed_json_on_job_create_is_400(api):
    response = api.generic("POST", "/api/jobs/", b'{"project_id": ', content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_errors__non_json_content_type_is_415(api):
    response = api.generic("POST", "/api/jobs/", b"a=b", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415


@pytest.mark.parametrize("path", ["/api/projects/", "/api/jobs/", "/api/auth/token/"])
def test_errors__oversize_body_is_413(api, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = b'{"name": "' + b"x" * 2000 + b'"}'

    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]


def test_errors__form_body_on_token_is_415(client, settings):
    # DRF's FormParser reads a form body whole, past the body limit: the token endpoint takes JSON only.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client.post("/api/auth/token/", "username=" + "x" * 2000,
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["detail"]


def test_errors__job_creation_is_throttled_per_user(api, user, other_user, settings):
    settings.API_JOB_CREATE_RATE = "2/min"
    project = make_project(owner=user)
    body = {"project_id": str(project.pk), "job_type": "image_generation"}

    codes = [api.post("/api/jobs/", body, format="json").status_code for _ in range(3)]

    assert codes == [201, 201, 429]
    limited = api.post("/api/jobs/", body, format="json")
    assert int(limited["Retry-After"]) > 0 and "detail" in limited.json()
    assert api.get("/api/jobs/").status_code == 200  # reading is not throttled
    other = token_client(other_user)
    assert other.post("/api/jobs/", {"project_id": str(make_project(owner=other_user).pk),
                                     "job_type": "image_generation"}, format="json").status_code == 201


def test_browsable_api__renders_for_a_logged_in_user(user, owned, client):
    project, job = owned
    client.force_login(user)
    for name, method, path, _ in endpoints(project.pk, job.pk):
        if method != "get" or name == "job-artifact":
            continue
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, path
        assert b"Django REST framework" in response.content, path
    for path in (f"/api/jobs/{job.pk}/cancel/", f"/api/jobs/{job.pk}/retry/"):  # POST-only: a 405 page
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 405 and b"Django REST framework" in response.content
