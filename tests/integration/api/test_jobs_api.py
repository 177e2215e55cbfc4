"""Jobs endpoints: happy paths through the real job service, validation, pagination and query counts."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs import plans, services, states
from jobs.models import GenerationJob
from tests.factories import make_job, make_project

pytestmark = pytest.mark.django_db

JOB_FIELDS = {
    "id", "project_id", "job_type", "status", "progress", "current_stage", "error_message", "celery_task_id",
    "params", "result", "attempts", "seq", "created_at", "started_at", "completed_at", "updated_at",
    "webhook_url", "webhook_events_filter", "priority", "queue_position", "start_timeout_s", "max_runtime_s",
}
EVENT_FIELDS = {"seq", "status", "progress", "stage", "message", "kind", "attempt", "data", "created_at"}


def test_job_create__201_queued_with_location(api, project):
    response = api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation",
                                       "params": {"width": 320, "height": 240}}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["status"] == states.QUEUED
    assert body["project_id"] == str(project.pk)
    assert body["params"]["width"] == 320 and "max_scenes" in body["params"]  # defaults filled in
    assert body["seq"] == 1 and body["attempts"] == 1 and body["result"] is None
    assert response["Location"] == f"/api/jobs/{body['id']}/"
    assert GenerationJob.objects.get(pk=body["id"]).status == states.QUEUED


def test_job_create__params_optional(api, project):
    response = api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "full_video"}, format="json")

    assert response.status_code == 201
    assert response.json()["params"]["fps"] == 24


def test_job_detail__returns_the_job(api, job):
    body = api.get(f"/api/jobs/{job.pk}/").json()

    assert set(body) == JOB_FIELDS
    assert body["id"] == str(job.pk)


def test_job_list__filters_newest_first(api, user):
    project_a, project_b = make_project(owner=user), make_project(owner=user)
    old = make_job(project=project_a, job_type="image_generation")
    audio = make_job(project=project_b, job_type="audio_generation")
    new = make_job(project=project_a, job_type="image_generation")
    services.job_cancel(job_id=new.pk)

    def ids(query: str) -> list[str]:
        response = api.get(f"/api/jobs/{query}")
        assert response.status_code == 200, response.content
        return [j["id"] for j in response.json()["results"]]

    assert ids("") == [str(new.pk), str(audio.pk), str(old.pk)]
    assert ids(f"?project_id={project_a.pk}") == [str(new.pk), str(old.pk)]
    assert ids("?status=cancelled") == [str(new.pk)]
    assert ids("?job_type=audio_generation") == [str(audio.pk)]
    assert ids(f"?project_id={project_a.pk}&status=queued") == [str(old.pk)]


@pytest.mark.parametrize("which", ["unknown", "foreign"])
def test_job_list__unknown_or_foreign_project_is_404(api, other_user, which):
    # Given a project id that is not one of the caller's projects (none at all, or another user's with a job)
    if which == "foreign":
        project_id = make_job(project=make_project(owner=other_user)).project_id
    else:
        project_id = "00000000-0000-0000-0000-000000000000"
    # When the caller lists jobs filtered by it
    response = api.get(f"/api/jobs/?project_id={project_id}")
    # Then it is not found (CONTRACT.md: was an empty list), and nothing says whether it exists
    assert response.status_code == 404
    assert response.json() == api.get("/api/jobs/?project_id=00000000-0000-0000-0000-000000000000").json()


def test_job_list__paginates_with_page_size_and_a_maximum(api, project):
    for _ in range(3):
        make_job(project=project)

    page = api.get("/api/jobs/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"] and page["previous"] is None
    assert len(api.get("/api/jobs/?page_size=2&page=2").json()["results"]) == 1
    assert api.get("/api/jobs/?page=99").status_code == 404
    from api.pagination import JobsPagination

    assert JobsPagination.max_page_size == 100


@pytest.mark.parametrize("path", ["/api/jobs/", "/api/projects/"])
@pytest.mark.parametrize("parameter", ["page", "page_size"])
def test_list__numbers_past_python_int_limit_are_400_naming_the_parameter(api, path, parameter):
    # 5,000 digits: int() refuses more than 4,300 and the list answered 500
    response = api.get(f"{path}?{parameter}={'9' * 5000}")

    assert response.status_code == 400
    assert "positive integer" in response.json()[parameter][0]
    assert api.get(f"{path}?{parameter}={'9' * 10}").status_code == 400


def test_job_cancel__200_with_the_cancel_response(api, job):
    response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 200
    assert response.json() == {"id": str(job.pk), "status": "cancelled", "cancelled": True,
                               "message": response.json()["message"]}
    assert response.json()["message"]
    job.refresh_from_db()
    assert job.status == states.CANCELLED


def test_job_cancel__finished_job_is_409(api, job):
    services.job_cancel(job_id=job.pk)

    response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 409
    assert "cancelled" in response.json()["detail"]


def test_job_retry__failed_job_back_to_queued_as_new_attempt(api, job):
    services.job_fail(job_id=job.pk, error_message="boom")

    response = api.post(f"/api/jobs/{job.pk}/retry/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == states.QUEUED and body["attempts"] == 2 and body["error_message"] is None


def test_job_retry__unfinished_job_is_409(api, job):
    response = api.post(f"/api/jobs/{job.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["detail"]


def test_job_retry__external_job_is_409_naming_why(api, project):
    job = services.job_create(project=project, job_type="image_generation", external_task_id="callers-task")
    services.job_fail(job_id=job.pk, error_message="boom")

    response = api.post(f"/api/jobs/{job.pk}/retry/")

    assert response.status_code == 409
    assert "done by the task that created it" in response.json()["detail"]


def test_job_events__in_seq_order_after_seq(api, job):
    services.job_start(job_id=job.pk)
    services.job_report_progress(job_id=job.pk, progress=40, stage="Generating images")
    services.job_complete(job_id=job.pk, result={"artifacts": []})

    events = api.get(f"/api/jobs/{job.pk}/events/").json()
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert set(events[0]) == EVENT_FIELDS
    assert [e["status"] for e in events] == ["queued", "processing", "processing", "completed"]
    assert events[2]["kind"] == "progress" and events[2]["stage"] == "Generating images"

    later = api.get(f"/api/jobs/{job.pk}/events/?after_seq=2").json()
    assert [e["seq"] for e in later] == [3, 4]


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
def test_job_events__bad_after_seq_is_400(api, job, value):
    response = api.get(f"/api/jobs/{job.pk}/events/?after_seq={value}")

    assert response.status_code == 400
    assert "after_seq" in response.json()


# --- validation -----------------------------------------------------------------------------------------

def test_job_create__unknown_job_type_names_the_allowed_values(api, project):
    response = api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "poem"}, format="json")

    assert response.status_code == 400
    message = " ".join(response.json()["job_type"])
    for allowed in plans.JOB_TYPES:
        assert allowed in message


@pytest.mark.parametrize("project_id", [None, "not-a-uuid", "00000000-0000-0000-0000-000000000000", "foreign"])
def test_job_create__missing_or_foreign_project_id_is_400(api, other_user, project_id):
    body = {"job_type": "image_generation"}
    if project_id == "foreign":
        project_id = str(make_project(owner=other_user).pk)
    if project_id is not None:
        body["project_id"] = project_id

    response = api.post("/api/jobs/", body, format="json")

    assert response.status_code == 400
    assert "project_id" in response.json()
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize("params, key", [
    ({"width": "wide"}, "width"),
    ({"width": 333}, "width"),
    ({"colour": "red"}, "colour"),
    ([1, 2], "params"),
    ("text", "params"),
])
def test_job_create__params_of_wrong_shape_name_the_key(api, project, params, key):
    response = api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation",
                                       "params": params}, format="json")

    assert response.status_code == 400
    assert key in response.json()


def test_job_create__script_the_pipeline_refuses_is_400(api, user):
    project = make_project(owner=user, script="")

    response = api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation"},
                        format="json")

    assert response.status_code == 400
    assert "script" in response.json()


@pytest.mark.parametrize("query, field", [
    ("status=done", "status"), ("job_type=poem", "job_type"), ("project_id=123", "project_id"),
    ("status=", "status"), ("project_id=", "project_id"),
])
def test_job_list__bad_filter_is_400_naming_it(api, query, field):
    response = api.get(f"/api/jobs/?{query}")

    assert response.status_code == 400
    assert field in response.json()


# --- query counts -----------------------------------------------------------------------------------------

def _list_queries(api) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/jobs/?page_size=100")
    assert response.status_code == 200
    return len(queries)


def test_job_list__query_count_does_not_grow_with_jobs(api, project, settings):
    for _ in range(5):
        make_job(project=project)
    five = _list_queries(api)
    for _ in range(45):
        make_job(project=project)

    fifty = _list_queries(api)

    assert api.get("/api/jobs/?page_size=100").json()["count"] == 50
    assert fifty == five, f"listing 50 jobs took {fifty} queries, 5 took {five}"
