"""The channel layer's Redis (CHANNEL_LAYER_REDIS_URL, a server of the test's own) is down when a client opens
a push stream: the client gets a clear answer instead of a cut connection, and the web process lives on.

- SSE: HTTP 503 with a JSON `detail` naming the reason and a Retry-After header;
- websocket: accepted, then closed with 4503 (try again later, as HTTP 503) and a reason;
- once the server is back, the same requests stream again (no restart of daphne).
"""
from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.factories import make_job, make_project, make_user
from tests.processes import artifacts_dir, free_port
from tests.redis_ha import RedisServer

from .conftest import token_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

TRY_AGAIN_LATER = 4503  # 1013 is refused by daphne's websocket library (realtime/layer_down.py)


@pytest.fixture(scope="module")
def layer_server():
    server = RedisServer(artifacts_dir() / f"redis-layer-down-{free_port()}").start()
    yield server
    server.stop()


async def _first_frame_or_close(url: str) -> tuple[str | None, int | None, str]:
    """(first message, close code, close reason) of a websocket, waiting at most 15 s."""
    async with connect(url, open_timeout=15, close_timeout=5) as ws:
        try:
            return str(await asyncio.wait_for(ws.recv(), 15)), None, ""
        except ConnectionClosed as closed:
            return None, closed.rcvd.code if closed.rcvd else None, closed.rcvd.reason if closed.rcvd else ""


def _sse_answer(port: int, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the first bytes of an SSE request (a stream that opens is not read to its end)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        with client.stream("GET", path, headers={"Authorization": f"Token {token}",
                                                  "Accept": "text/event-stream"}) as response:
            first = b""
            for chunk in response.iter_bytes():
                first += chunk
                if response.status_code != 200 or b"data:" in first:
                    break
            return response.status_code, dict(response.headers), first


def test_channel_layer_down__streams_get_a_clear_answer_and_daphne_lives(processes, layer_server):
    # Given a web process whose channel layer lives on a Redis of its own, and a user's job
    port = processes.start_daphne(CHANNEL_LAYER_REDIS_URL=layer_server.url)
    user = make_user()
    token = token_for(user)
    project = make_project(owner=user)
    job = make_job(project=project)
    ws_job = f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/?token={token}"
    ws_project = f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/?token={token}"
    sse_job, sse_project = f"/api/jobs/{job.pk}/stream/", f"/api/projects/{project.pk}/stream/"

    # When that Redis is down and the user opens each kind of stream
    layer_server.stop()
    try:
        answers = {url: asyncio.run(_first_frame_or_close(url)) for url in (ws_job, ws_project)}
        sse = {path: _sse_answer(port, path, token) for path in (sse_job, sse_project)}
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=15)
    finally:
        layer_server.start()

    # Then each websocket was accepted and closed with 4503 and a reason, each SSE request answered 503 with
    # a reason and a Retry-After, /healthz named the channels role, and daphne is still running
    for url, (first, code, reason) in answers.items():
        assert (first, code) == (None, TRY_AGAIN_LATER), (url, first, code, reason)
        assert "unavailable" in reason, reason
    for path, (status, headers, body) in sse.items():
        assert status == 503, (path, status, body[:300])
        assert int(headers["retry-after"]) > 0
        assert "unavailable" in httpx.Response(503, content=body).json()["detail"], body
    assert health.status_code == 503 and health.json()["redis_roles"]["channels"] == "down"
    assert processes.procs["daphne"].poll() is None

    # And once the server is back the same streams open again, without restarting daphne
    first, code, _ = asyncio.run(_first_frame_or_close(ws_job))
    assert code is None and first is not None and '"status"' in first
    status, _, body = _sse_answer(port, sse_job, token)
    assert status == 200 and b"event: status" in body
