"""Creating captions jobs through the API: the source must be a completed full_video of the same project."""
from __future__ import annotations

import uuid

import pytest

from jobs import services, states
from jobs.models import GenerationJob
from tests.factories import make_job, make_project

pytestmark = pytest.mark.django_db


def finished(job_type: str, project) -> GenerationJob:
    """A job of `job_type` marked completed through the job service (no worker involved)."""
    job = make_job(project=project, job_type=job_type)
    services.job_start(job_id=job.pk, worker="test-worker")
    services.job_complete(job_id=job.pk, result={"artifacts": []})
    return GenerationJob.objects.get(pk=job.pk)


def create_captions(api, project, **params):
    body = {"project_id": str(project.pk), "job_type": "captions"}
    if params:
        body["params"] = params
    return api.post("/api/jobs/", body, format="json")


def test_captions_create__without_a_completed_full_video_is_400_naming_the_field(api, project):
    make_job(project=project, job_type="full_video")  # queued, not completed

    response = create_captions(api, project)

    assert response.status_code == 400
    assert "no completed full_video" in response.json()["source_job_id"][0]


def test_captions_create__defaults_to_the_latest_completed_full_video(api, project):
    finished("full_video", project)
    latest = finished("full_video", project)

    response = create_captions(api, project)

    assert response.status_code == 201, response.content
    assert response.json()["status"] == states.QUEUED
    assert response.json()["params"] == {"source_job_id": str(latest.pk)}


def test_captions_create__an_explicit_source_is_kept(api, project):
    first = finished("full_video", project)
    finished("full_video", project)

    response = create_captions(api, project, source_job_id=str(first.pk))

    assert response.status_code == 201 and response.json()["params"]["source_job_id"] == str(first.pk)


@pytest.mark.parametrize("source", ["other_project", "other_type", "unfinished", "unknown", "not-a-uuid", 7])
def test_captions_create__a_source_that_is_not_a_completed_full_video_of_this_project_is_400(api, user, project,
                                                                                           source):
    finished("full_video", project)  # a valid default exists: the explicit bad one must still be refused
    source_id = {
        "other_project": lambda: str(finished("full_video", make_project(owner=user)).pk),
        "other_type": lambda: str(finished("image_generation", project).pk),
        "unfinished": lambda: str(make_job(project=project, job_type="full_video").pk),
        "unknown": lambda: str(uuid.uuid4()),
    }.get(source, lambda: source)()

    response = create_captions(api, project, source_job_id=source_id)

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["source_job_id"]


def test_captions_create__unknown_param_is_400(api, project):
    finished("full_video", project)

    response = create_captions(api, project, width=320)

    assert response.status_code == 400 and "width" in response.json()


def test_captions_job_type__is_in_the_openapi_enum(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert "captions" in schema["components"]["schemas"]["JobTypeEnum"]["enum"]
