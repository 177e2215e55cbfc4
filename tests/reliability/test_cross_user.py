"""Zero leaks between users over real daphne: every endpoint, socket and page of user A is a 404 / 4404 for
user B; and the API's schema-driven fuzzing with more examples than the API suite runs."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jobs import services
from tests.factories import make_job, make_project, make_user
from tests.integration.api import test_schema_api
from tests.integration.api.endpoints import endpoints
from tests.integration.api.test_schema_api import api_schema, fuzz_world  # noqa: F401 - fixtures

from .conftest import token_for

SECRET = "Scene about the secret lighthouse"


async def ws_close_code(url: str, **kwargs) -> tuple[int | None, list[str]]:
    """The close code the server ends a connection with, and anything it sent before."""
    received: list[str] = []
    async with connect(url, open_timeout=10, **kwargs) as socket:
        try:
            while True:
                received.append(await asyncio.wait_for(socket.recv(), 10))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), received


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.django_db(transaction=True)
def test_cross_user__every_endpoint_socket_and_page_is_404_for_another_user(processes, settings):
    # Given user A's project and failed job (with an artifact) and user B with a token and a session
    port = processes.start_daphne(JOBS_CREATE_RATE="")
    owner, intruder = make_user(), make_user()
    project = make_project(owner=owner, name="A's private project", script=f"# Scene 1\n{SECRET}.\n")
    job = make_job(project=project)
    services.job_fail(job_id=job.pk, error_message="boom")
    folder = settings.MEDIA_ROOT / "jobs" / str(job.pk)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "video.mp4").write_bytes(b"\x00" * 100)
    token = token_for(intruder)
    pages = Client()
    pages.force_login(intruder)
    session = pages.cookies["sessionid"].value
    base = f"http://127.0.0.1:{port}"

    # When B calls every endpoint on A's objects, over token auth and over the session
    leaks = []
    with httpx.Client(base_url=base, timeout=20) as http:
        for name, method, path, body in endpoints(project.pk, job.pk):
            for variant in (path, path.rstrip("/") if path.endswith("/") else path):
                response = http.request(method.upper(), variant, json=body,
                                        headers={"Authorization": f"Token {token}"})
                expected = {"project-list": 200, "job-list": 200, "project-create": 201, "job-create": 400}
                if response.status_code != expected.get(name, 404):
                    leaks.append((name, variant, response.status_code))
                if SECRET in response.text or "A's private project" in response.text:
                    leaks.append((name, variant, "content"))
                if name in ("project-list", "job-list") and response.json()["count"] != 0:
                    leaks.append((name, variant, "listed"))
        filtered = http.get(f"/api/jobs/?project_id={project.pk}", headers={"Authorization": f"Token {token}"})
        if filtered.status_code != 404 or SECRET in filtered.text:
            leaks.append(("job-list by project", filtered.status_code, filtered.text[:200]))
        for page in (f"/projects/{project.pk}/", f"/jobs/{job.pk}/"):
            response = http.get(page, headers={"Cookie": f"sessionid={session}"})
            if response.status_code != 404 or SECRET in response.text:
                leaks.append((page, response.status_code))
        own = http.get("/", headers={"Cookie": f"sessionid={session}"})
        assert own.status_code == 200 and "A's private project" not in own.text

    # ... and opens every socket on them, by token and by session cookie (with an allowed Origin)
    sockets = [f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/", f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/",
               f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}", f"ws://127.0.0.1:{port}/ws/projects/{project.pk}"]

    async def all_sockets() -> list:
        results = []
        for url in sockets:
            results.append((url, "token", *await ws_close_code(f"{url}?token={token}")))
            results.append((url, "session", *await ws_close_code(
                url, origin=f"http://127.0.0.1:{port}", additional_headers={"Cookie": f"sessionid={session}"})))
        # B's own project stream refuses to resume A's job
        mine = make_project_async_result["project"]
        async with connect(f"ws://127.0.0.1:{port}/ws/projects/{mine}/?token={token}") as socket:
            # (B's project has no jobs, so no snapshot comes first)
            await socket.send(f'{{"type": "resume", "after_seq": 0, "job_id": "{job.pk}"}}')
            answer = await asyncio.wait_for(socket.recv(), 10)
            results.append(("resume A's job on B's project", "token", None, [answer]))
        return results

    make_project_async_result = {"project": make_project(owner=intruder).pk}
    for url, how, code, received in asyncio.run(all_sockets()):
        if code is None:  # the resume answer
            if '"error"' not in received[0] or str(job.pk) in received[0] and "status" in received[0]:
                leaks.append((url, how, received))
            continue
        if code != 4404 or received:
            leaks.append((url, how, code, received))

    # Then nothing leaked and nothing of A's changed
    assert leaks == []
    job.refresh_from_db()
    project.refresh_from_db()
    assert (job.status, project.name) == ("failed", "A's private project")


@pytest.mark.slow
@pytest.mark.reliability
def test_cross_user__api_fuzzing_with_more_examples(api_schema, fuzz_world, monkeypatch):  # noqa: F811
    """The API suite's schemathesis run (no 5xx, every response as documented) with 2x the examples."""
    monkeypatch.setattr(test_schema_api, "MAX_EXAMPLES", test_schema_api.MAX_EXAMPLES * 2)
    test_schema_api.test_api__fuzzed_requests_never_5xx_and_match_the_schema(api_schema, fuzz_world)
