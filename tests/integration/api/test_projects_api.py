"""Projects endpoints: happy paths through the real services, and validation."""
from __future__ import annotations

import pytest

from jobs import services, states
from jobs.models import GenerationJob
from projects.models import Project
from tests.factories import make_job, make_project

pytestmark = pytest.mark.django_db

PROJECT_FIELDS = {"id", "name", "script", "created_at", "updated_at"}


def test_project_create__returns_201_and_the_project(api, user):
    response = api.post("/api/projects/", {"name": "  Trip  ", "script": "# A\nHello."}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PROJECT_FIELDS
    assert body["name"] == "Trip"
    assert Project.objects.get(pk=body["id"]).owner == user


def test_project_list__own_projects_newest_first_paginated(api, user, other_user):
    first, second = make_project(owner=user), make_project(owner=user)
    make_project(owner=other_user)

    body = api.get("/api/projects/").json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [p["id"] for p in body["results"]] == [str(second.pk), str(first.pk)]


def test_project_detail__get_and_patch(api, project):
    assert api.get(f"/api/projects/{project.pk}/").json()["name"] == project.name

    response = api.patch(f"/api/projects/{project.pk}/", {"name": "Renamed"}, format="json")

    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    project.refresh_from_db()
    assert project.name == "Renamed" and project.script  # script untouched by a partial update


def test_project_delete__cancels_unfinished_jobs_and_removes_artifacts(api, project, settings, captured_events):
    queued = make_job(project=project)
    done = make_job(project=project)
    services.job_start(job_id=done.pk)
    services.job_complete(job_id=done.pk, result={"artifacts": []})
    folder = settings.MEDIA_ROOT / "jobs" / str(done.pk)
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"x")

    response = api.delete(f"/api/projects/{project.pk}/")

    assert response.status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not GenerationJob.objects.filter(pk__in=[queued.pk, done.pk]).exists()
    assert not folder.exists()


def test_project_delete__cancels_through_the_job_service(api, project, django_capture_on_commit_callbacks, captured_events):
    job = make_job(project=project)

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/projects/{project.pk}/").status_code == 204

    cancelled = [e for e in captured_events if e.job_id == str(job.pk) and e.status == states.CANCELLED]
    assert cancelled, "deleting a project must cancel its unfinished job through job_cancel"


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": 5, "script": ["not", "text"]}, "script"),
    ({"name": "ok", "script": "a\x00b"}, "script"),
])
def test_project_create__bad_input_is_400_naming_the_field(api, body, field):
    response = api.post("/api/projects/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()


def test_project_update__put_is_405(api, project):
    response = api.put(f"/api/projects/{project.pk}/", {"name": "x"}, format="json")

    assert response.status_code == 405
    assert "detail" in response.json()
