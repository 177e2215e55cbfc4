"""Permissions matrix: owner, another user, anonymous and staff against every endpoint.

Owner: success. Another user and staff (who use the admin, not the API): 404 for the owner's objects,
and lists without them. Anonymous: 401 with WWW-Authenticate.
"""
from __future__ import annotations

import pytest

from jobs import services
from tests.factories import make_job, make_project, make_user

from .conftest import token_client
from .endpoints import ENDPOINT_NAMES, endpoints

pytestmark = pytest.mark.django_db

# The owner's expected status per endpoint (the job is failed, so retry works and cancel is a 409).
OWNER_STATUS = {
    "project-list": 200, "project-create": 201, "project-get": 200, "project-patch": 200,
    "project-delete": 204, "job-list": 200, "job-create": 201, "job-get": 200, "job-cancel": 409,
    "job-retry": 200, "job-events": 200, "job-artifact": 200, "job-deliveries": 200,
}
# Endpoints that list or create rather than touch the owner's object: another user gets their own view.
NOT_OBJECT_SCOPED = {"project-list", "project-create", "job-list"}


@pytest.fixture
def owned(settings):
    owner = make_user()
    project = make_project(owner=owner)
    job = make_job(project=project)
    services.job_fail(job_id=job.pk, error_message="boom")
    folder = settings.MEDIA_ROOT / "jobs" / str(job.pk)
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"\x00" * 100)
    return owner, project, job


def _call(client, method: str, path: str, body: dict | None):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_permissions__owner_succeeds(owned, name):
    owner, project, job = owned
    _, method, path, body = next(e for e in endpoints(project.pk, job.pk) if e[0] == name)

    response = _call(token_client(owner), method, path, body)

    assert response.status_code == OWNER_STATUS[name], response.content


@pytest.mark.parametrize("who", ["other", "staff"])
@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_permissions__other_user_and_staff_get_404(owned, name, who):
    owner, project, job = owned
    intruder = make_user(staff=(who == "staff"))
    _, method, path, body = next(e for e in endpoints(project.pk, job.pk) if e[0] == name)

    response = _call(token_client(intruder), method, path, body)

    if name in ("project-list", "job-list"):
        assert response.status_code == 200
        assert response.json()["count"] == 0, "another user's objects must not be listed"
    elif name == "job-create":  # a foreign project is a bad project_id, not a leak
        assert response.status_code == 400
        assert "project_id" in response.json()
    elif name == "project-create":
        assert response.status_code == 201
    else:
        assert response.status_code == 404, response.content
        assert response.json() == {"detail": response.json()["detail"]}
    job.refresh_from_db()
    project.refresh_from_db()
    assert project.name != "Renamed" and job.status == "failed"


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_permissions__anonymous_gets_401_with_www_authenticate(owned, name, client_for):
    _, project, job = owned
    _, method, path, body = next(e for e in endpoints(project.pk, job.pk) if e[0] == name)

    response = _call(client_for(None), method, path, body)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert "detail" in response.json()


def test_permissions__bad_token_is_401(client_for):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION="Token nope")

    response = client.get("/api/jobs/")

    assert response.status_code == 401


def test_permissions__session_unsafe_request_needs_csrf(user, project):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/projects/").status_code == 200

    refused = client.post("/api/projects/", {"name": "x"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]

    client.get("/api/projects/", HTTP_ACCEPT="text/html")  # the browsable API sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post("/api/projects/", {"name": "x"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def test_permissions__token_request_needs_no_csrf(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    assert client.post("/api/projects/", {"name": "x"}, format="json").status_code == 201


def test_auth_token__exchanges_credentials_for_a_token(user, client_for):
    client = client_for(None)

    response = client.post("/api/auth/token/", {"username": user.username, "password": "pw-test-123456"},
                           format="json")

    assert response.status_code == 200
    key = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/projects/").status_code == 200


def test_auth_token__wrong_password_is_400(user, client_for):
    response = client_for(None).post("/api/auth/token/", {"username": user.username, "password": "x"},
                                     format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()
