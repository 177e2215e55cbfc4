"""The OpenAPI schema: valid, served with offline docs, and honoured by the API under fuzzing.

The fuzz test (schemathesis, Hypothesis underneath) sends generated valid and invalid requests to every
operation through the real WSGI app and test database, and fails on any 5xx or any response that does
not match the schema (status code, content type, headers, body).
"""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from django.core.management import call_command
from hypothesis.errors import Unsatisfiable
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from rest_framework.authtoken.models import Token

from jobs import services
from tests.factories import make_job, make_project, make_user


@pytest.mark.django_db
def test_schema__validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))

    text = (tmp_path / "schema.yaml").read_text()
    for path in ("/api/jobs/", "/api/jobs/{job_id}/cancel/", "/api/projects/{project_id}/", "/healthz"):
        assert f"  {path}:" in text
    for component in ("Job:", "PaginatedJobList:", "JobCancelResponse:", "Error:", "ValidationError:"):
        assert f"    {component}" in text


@pytest.mark.django_db
def test_schema__served_as_openapi_3(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    job = schema["components"]["schemas"]["Job"]["properties"]
    assert list(job) == ["id", "project_id", "job_type", "status", "progress", "current_stage", "error_message",
                         "celery_task_id", "params", "result", "attempts", "seq", "created_at", "started_at",
                         "completed_at", "updated_at", "webhook_url", "webhook_events_filter", "priority",
                         "queue_position", "start_timeout_s", "max_runtime_s"]


@pytest.mark.django_db
def test_schema__generated_once_per_process(client, monkeypatch):
    # given the schema view (its per-process cache emptied) and a count of schema generations
    from drf_spectacular.generators import SchemaGenerator

    from api.views import CachedSchemaView

    monkeypatch.setattr(CachedSchemaView, "_schemas", {})
    generated = []
    get_schema = SchemaGenerator.get_schema
    monkeypatch.setattr(SchemaGenerator, "get_schema", lambda self, *a, **k: generated.append(1) or get_schema(self, *a, **k))
    # when it is asked for five times, in JSON and YAML
    answers = [client.get("/api/schema/", HTTP_ACCEPT=accept)
               for accept in ["application/vnd.oai.openapi+json", "application/vnd.oai.openapi"] * 2
               + ["application/vnd.oai.openapi+json"]]
    # then it was generated once and every answer is the same schema
    assert [a.status_code for a in answers] == [200] * 5 and len(generated) == 1
    assert answers[0].json() == answers[2].json() == answers[4].json()
    assert answers[1].content == answers[3].content and answers[1].content.startswith(b"openapi:")


@pytest.mark.django_db
def test_docs__swagger_ui_uses_self_hosted_assets(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200


# --- fuzzing --------------------------------------------------------------------------------------------

@pytest.fixture
def fuzz_world(db, settings, tmp_path):
    """A user with a token, a project and jobs; generated ids are sometimes swapped for these real ones."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.API_JOB_CREATE_RATE = ""  # fuzzing creates many jobs; the throttle has its own test
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.05, "WORKERS_CACHE_S": 3600}
    user = make_user()
    project = make_project(owner=user)
    job = make_job(project=project)
    # A finished full video, so that creating a captions job (which needs one) can succeed as well.
    film = make_job(project=project, job_type="full_video")
    services.job_start(job_id=film.pk, worker="fuzz")
    services.job_complete(job_id=film.pk, result={"artifacts": []})
    folder = settings.MEDIA_ROOT / "jobs" / str(job.pk)
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"\x00" * 2048)
    return {"token": Token.objects.create(user=user).key, "project": project, "job": job}


@pytest.fixture
def api_schema(db):
    from django.core import signals
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    # Like Django's test client: a finished request must not close the test's connection (and transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        # 413 is a correct answer to an oversized invalid body, alongside the usual 4xx rejections.
        config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
            "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429],
        }}})
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(), config=config)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _point_at_real_objects(case, world) -> None:
    """Half of the generated UUIDs (by parity) become the real project/job, so success paths are fuzzed too."""
    real = {"job_id": str(world["job"].pk), "project_id": str(world["project"].pk)}
    for name, value in list((case.path_parameters or {}).items()):
        try:
            parsed = uuid.UUID(str(value))
        except ValueError:
            continue
        if name in real and parsed.int % 2 == 0:
            case.path_parameters[name] = real[name]
        if name == "path" and parsed.int % 2 == 0:
            case.path_parameters[name] = "video.mp4"
    if isinstance(case.body, dict) and isinstance(case.body.get("project_id"), str):
        try:
            if uuid.UUID(case.body["project_id"]).int % 2 == 0:
                case.body["project_id"] = real["project_id"]
        except ValueError:
            pass


MAX_EXAMPLES = 15  # per operation and mode: ~15 operations x 2 modes x 15 = ~450 requests


def test_api__fuzzed_requests_never_5xx_and_match_the_schema(api_schema, fuzz_world):
    """Every operation, valid and invalid generated inputs: no 5xx and every response as documented."""
    headers = {"Authorization": f"Token {fuzz_world['token']}"}
    # The SSE streams need the ASGI server (an open stream waits for live events; WSGI cannot serve
    # that): tests/integration/api/test_sse_api.py and tests/e2e/test_sse_stream.py cover them.
    operations = [op for op in (result.ok() for result in api_schema.get_all_operations())
                  if not op.path.endswith("/stream/")]
    assert len(operations) >= 14
    tried: list[str] = []
    succeeded: set[str] = set()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                                 suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def fuzz(case) -> None:
                _point_at_real_objects(case, fuzz_world)
                # Schema-valid input can still be refused for what it means (wrong password, a script the
                # pipeline rejects), so "positive data accepted" is not a property of this API.
                response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
                if response.status_code < 300:
                    succeeded.add(operation.label)

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing to get wrong (e.g. GET /healthz has no parameters): no invalid request exists.
                assert mode == GenerationMode.NEGATIVE, operation.label
                continue
            tried.append(f"{mode.value} {operation.label}")
    # Operations without input (GET /healthz, the webhook secret's GET and rotate) have no negative mode.
    assert len(tried) >= 2 * len(operations) - 3, tried
    # The fuzzing reached the success paths too, not only 4xx answers.
    assert {"GET /api/jobs/{job_id}/", "POST /api/jobs/", "GET /api/projects/", "POST /api/projects/"} <= succeeded
