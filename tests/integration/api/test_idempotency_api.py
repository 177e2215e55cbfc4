"""Idempotency-Key on POST /api/jobs/ and POST /api/projects/ (api/idempotency.py)."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from api.idempotency import idempotency_keys_sweep
from api.models import IdempotencyKey
from jobs.models import GenerationJob
from projects.models import Project
from tests.factories import make_project, make_user

from .conftest import token_client

pytestmark = pytest.mark.django_db


def _post(client, path: str, body: dict, key: str | None = "key-1"):
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body, format="json", **extra)


def _job_body(project) -> dict:
    return {"project_id": str(project.pk), "job_type": "image_generation"}


def test_idempotency__same_key_and_body_replays_the_first_response_and_creates_nothing() -> None:
    # given a job created with a key
    user = make_user()
    project = make_project(owner=user)
    client = token_client(user)
    first = _post(client, "/api/jobs/", _job_body(project))

    # when the same request is sent again (without the trailing slash, as a retrying client might)
    again = _post(client, "/api/jobs", _job_body(project))

    # then the same status, body and Location, marked as a replay, and still one job
    assert first.status_code == 201 and not first.has_header("Idempotent-Replayed")
    assert (again.status_code, again.content) == (201, first.content)
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert GenerationJob.objects.filter(project=project).count() == 1


def test_idempotency__project_create_replays_too() -> None:
    user = make_user()
    client = token_client(user)

    first = _post(client, "/api/projects/", {"name": "Once", "script": "# A\nB"})
    again = _post(client, "/api/projects/", {"script": "# A\nB", "name": "Once"})  # key order is not the body

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert Project.objects.filter(owner=user).count() == 1


def test_idempotency__same_key_with_another_body_is_422() -> None:
    # given a key used for one job
    user = make_user()
    project = make_project(owner=user)
    client = token_client(user)
    _post(client, "/api/jobs/", _job_body(project))

    # when it is sent with another body, or to the other create endpoint
    other_body = _post(client, "/api/jobs/", {**_job_body(project), "job_type": "audio_generation"})
    other_path = _post(client, "/api/projects/", {"name": "x"})

    # then 422 naming the reason, and nothing new
    assert other_body.status_code == 422 and "different request body" in other_body.json()["detail"]
    assert other_path.status_code == 422
    assert GenerationJob.objects.filter(project=project).count() == 1
    assert Project.objects.filter(owner=user).count() == 1


def test_idempotency__keys_are_per_user() -> None:
    # given two users sending the same key
    alice, bob = make_user(), make_user()
    first = _post(token_client(alice), "/api/projects/", {"name": "Same"})
    second = _post(token_client(bob), "/api/projects/", {"name": "Same"})

    # then each gets a project of their own and neither response is a replay
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert not second.has_header("Idempotent-Replayed")


def test_idempotency__while_the_first_request_is_in_flight_is_409() -> None:
    # given a key claimed a moment ago by a request that has not finished
    user = make_user()
    project = make_project(owner=user)
    client = token_client(user)
    _post(client, "/api/jobs/", _job_body(project), key="held")
    row = IdempotencyKey.objects.get(user=user, key="held")
    IdempotencyKey.objects.filter(pk=row.pk).update(status_code=None, claim=uuid.uuid4(), claimed_at=timezone.now())

    # when the same request arrives
    response = _post(client, "/api/jobs/", _job_body(project), key="held")

    # then 409, and nothing new
    assert response.status_code == 409 and "still being handled" in response.json()["detail"]
    assert GenerationJob.objects.filter(project=project).count() == 1


def test_idempotency__claim_of_a_dead_request_is_taken_over(settings) -> None:
    # given a key claimed long ago by a request whose process died before committing anything
    user = make_user()
    client = token_client(user)
    body = {"name": "Retry"}
    _post(client, "/api/projects/", body, key="orphan")
    Project.objects.filter(owner=user).delete()  # its work was rolled back with it
    long_ago = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_S + 5)
    IdempotencyKey.objects.filter(key="orphan").update(status_code=None, claim=uuid.uuid4(), claimed_at=long_ago)

    # when the client retries
    response = _post(client, "/api/projects/", body, key="orphan")

    # then the retry runs and its response is the one kept from now on
    assert response.status_code == 201 and not response.has_header("Idempotent-Replayed")
    assert _post(client, "/api/projects/", body, key="orphan").content == response.content
    assert Project.objects.filter(owner=user).count() == 1


def test_idempotency__refused_request_releases_the_key() -> None:
    # given a create refused for its body
    user = make_user()
    project = make_project(owner=user)
    client = token_client(user)
    refused = _post(client, "/api/jobs/", {"project_id": str(project.pk), "job_type": "nonsense"})

    # when the client fixes the body and retries with the same key
    fixed = _post(client, "/api/jobs/", _job_body(project))

    # then the refusal was not remembered: the job is created
    assert refused.status_code == 400
    assert fixed.status_code == 201 and not fixed.has_header("Idempotent-Replayed")


def test_idempotency__expired_key_is_new_again_and_swept(settings) -> None:
    # given a key used more than IDEMPOTENCY_KEY_TTL_S ago
    user = make_user()
    project = make_project(owner=user)
    client = token_client(user)
    _post(client, "/api/jobs/", _job_body(project), key="old")
    _post(client, "/api/jobs/", _job_body(project), key="older")
    long_ago = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S + 1)
    IdempotencyKey.objects.filter(user=user).update(created_at=long_ago, claimed_at=long_ago)

    # when it is used again, and the maintenance sweep runs
    again = _post(client, "/api/jobs/", _job_body(project), key="old")
    swept = idempotency_keys_sweep()

    # then a second job is created, and only the other expired key was deleted
    assert again.status_code == 201 and not again.has_header("Idempotent-Replayed")
    assert GenerationJob.objects.filter(project=project).count() == 3
    assert swept == 1
    assert list(IdempotencyKey.objects.filter(user=user).values_list("key", flat=True)) == ["old"]


@pytest.mark.parametrize("key", ["", "x" * 256, "schlüssel", "tab\there"])
def test_idempotency__malformed_key_is_400_naming_the_header(key: str) -> None:
    user = make_user()

    response = _post(token_client(user), "/api/projects/", {"name": "x"}, key=key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Project.objects.filter(owner=user).exists()


def test_idempotency__without_the_header_every_post_creates() -> None:
    user = make_user()
    client = token_client(user)

    _post(client, "/api/projects/", {"name": "x"}, key=None)
    _post(client, "/api/projects/", {"name": "x"}, key=None)

    assert Project.objects.filter(owner=user).count() == 2
    assert not IdempotencyKey.objects.exists()
