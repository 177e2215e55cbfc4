"""The SSE endpoints' answers before streaming (auth, owner scope, bad input) and finished jobs' streams."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs import services
from realtime import sse
from tests.factories import make_job, make_project, make_user

from .conftest import token_client


def _collect(response: Any) -> list[dict[str, Any]]:
    """Drive the response's async generator to its end; the events as {"id", "event", "data"}."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    found = []
    for block in asyncio.run(read()).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            found.append(fields)
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["jobs", "projects"])
def test_stream__anonymous_is_401_and_another_users_object_is_404(kind: str) -> None:
    # given a job of one user
    job = make_job(project=make_project(owner=make_user()))
    target = job.pk if kind == "jobs" else job.project_id
    path = f"/api/{kind}/{target}/stream/"

    # when an anonymous client and another user ask for its stream (as EventSource does)
    anonymous = APIClient().get(path, HTTP_ACCEPT="text/event-stream")
    other = token_client(make_user()).get(path, HTTP_ACCEPT="text/event-stream")
    unknown = token_client(make_user()).get(f"/api/{kind}/not-a-uuid/stream", HTTP_ACCEPT="text/event-stream")

    # then 401 with WWW-Authenticate, and 404 as for an unknown id, both JSON
    assert anonymous.status_code == 401 and anonymous.has_header("WWW-Authenticate")
    assert (other.status_code, other.json()) == (404, {"detail": f"{kind[:-1].title()} not found."})
    assert unknown.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(("header", "query", "field"), [
    ("abc", None, "Last-Event-ID"), ("-1", None, "Last-Event-ID"), (None, "1.5", "after_seq"),
    (None, "99999999999", "after_seq"),
])
def test_job_stream__malformed_resume_point_is_400_naming_it(header: str | None, query: str | None, field: str) -> None:
    # given an own job
    user = make_user()
    job = make_job(project=make_project(owner=user))
    extra = {"HTTP_LAST_EVENT_ID": header} if header is not None else {}
    path = f"/api/jobs/{job.pk}/stream/" + (f"?after_seq={query}" if query is not None else "")

    # when the resume point is not a seq
    response = token_client(user).get(path, **extra)

    # then 400 naming the header or parameter
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.django_db(transaction=True)
def test_job_stream__finished_job_sends_its_snapshot_and_ends() -> None:
    # given a completed job
    user = make_user()
    job = make_job(project=make_project(owner=user))
    services.job_start(job_id=job.pk, worker="test")
    services.job_complete(job_id=job.pk, result={"artifacts": []}, attempt=1)

    # when its stream is read
    response = token_client(user).get(f"/api/jobs/{job.pk}/stream/", HTTP_ACCEPT="text/event-stream")
    found = _collect(response)

    # then one `completed` status event with id = seq, and the stream ended by itself
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    assert [(e["id"], e["event"], e["data"]["status"]) for e in found] == [("3", "status", "completed")]
    assert found[0]["data"]["result"] == {"artifacts": []}


@pytest.mark.django_db(transaction=True)
def test_job_stream__last_event_id_replays_the_rest_then_ends() -> None:
    # given a failed job with five events
    user = make_user()
    job = make_job(project=make_project(owner=user))
    services.job_start(job_id=job.pk, worker="test")
    services.job_report_progress(job_id=job.pk, progress=10, stage="One", attempt=1)
    services.job_report_progress(job_id=job.pk, progress=20, stage="Two", attempt=1)
    services.job_fail(job_id=job.pk, error_message="boom")

    # when a client that saw seq 2 resumes
    found = _collect(token_client(user).get(f"/api/jobs/{job.pk}/stream/", HTTP_LAST_EVENT_ID="2"))
    at_end = _collect(token_client(user).get(f"/api/jobs/{job.pk}/stream/?after_seq=5"))

    # then it gets 3, 4 and 5 (the failure with its message), and one that has everything gets nothing
    assert [e["data"]["seq"] for e in found] == [3, 4, 5]
    assert [e["id"] for e in found] == ["3", "4", "5"]
    assert (found[-1]["data"]["status"], found[-1]["data"]["error_message"]) == ("failed", "boom")
    assert at_end == []


def test_frame__status_message_has_id_event_and_one_data_line() -> None:
    message = {"type": "status", "job_id": "j", "status": "processing", "progress": 1.0, "current_stage": "a\nb",
               "error_message": None, "seq": 7, "result": None}

    text = sse.frame(message).decode()

    assert text.startswith("id: 7\nevent: status\ndata: {") and text.endswith("}\n\n")
    assert text.count("\n") == 4  # a newline inside a value is escaped by JSON
    # an artifact message is a numbered job event too: its seq is the id a reconnect resumes after
    assert sse.frame({"type": "artifact", "job_id": "j", "seq": 8}).decode().startswith("id: 8\nevent: artifact\ndata: ")
