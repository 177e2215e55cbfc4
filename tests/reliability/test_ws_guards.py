"""The limits each websocket lives under, through the real ASGI app, channel layer (Redis) and database:
message budget, sockets per user, re-authorisation, ownership on resume, the quiet-socket gap check and
the full-origin check. The server-side byte cap and keep-alive need real daphne: test_ws_abuse.py.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from jobs import listeners, services
from jobs.models import GenerationJob
from projects.models import Project
from realtime import publish
from tests.factories import make_processing_job, make_user
from tests.integration.realtime.conftest import Watcher

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def watcher(user) -> Watcher:
    return Watcher(user)


@pytest.fixture
def tight(settings):
    """Small limits, so each is reached in a few messages."""
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "MESSAGES_BURST": 10, "MESSAGES_PER_S": 1, "STRIKES": 3,
                           "SOCKETS_PER_USER": 3, "QUIET_CHECK_S": 0.6}
    return settings


async def _open(socket: WebsocketCommunicator) -> dict[str, Any]:
    connected, _ = await socket.connect(timeout=5)
    assert connected
    return await socket.receive_json_from(timeout=5)


async def _closed_with(socket: WebsocketCommunicator, timeout: float = 5) -> int | None:
    """Read until the server closes; the close code."""
    while True:
        output = await socket.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


# --- message budget ----------------------------------------------------------------------------------------

async def test_ws_guards__messages_over_budget_get_errors_then_the_socket_is_closed_4429(tight, watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await _open(socket)

    # When the client sends 20 pings at once against a budget of 10 (3 strikes allowed)
    for _ in range(20):
        await socket.send_to(text_data="ping")

    # Then 10 pongs, 3 rate-limit errors, and a 4429 close
    answers = [await socket.receive_output(timeout=5) for _ in range(13)]
    assert [a.get("text") for a in answers[:10]] == ["pong"] * 10
    assert all('"rate limit' in a["text"] for a in answers[10:]), answers[10:]
    assert await _closed_with(socket) == 4429


async def test_ws_guards__refresh_costs_five(tight, watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await _open(socket)

    # A budget of 10 pays for one refresh (1 + 5) and four pings; the next refresh is refused
    await socket.send_to(text_data="refresh")
    assert (await socket.receive_json_from(timeout=5))["type"] == "status"
    for _ in range(4):
        await socket.send_to(text_data="ping")
        assert await socket.receive_from(timeout=5) == "pong"
    await socket.send_to(text_data='{"type": "refresh"}')
    assert (await socket.receive_json_from(timeout=5))["type"] == "error"
    await socket.disconnect()


# --- sockets per user --------------------------------------------------------------------------------------

async def test_ws_guards__a_users_socket_over_the_cap_is_closed_4429_others_unaffected(tight, watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    others = await database_sync_to_async(lambda: Watcher(make_user()))()
    their_job = await database_sync_to_async(make_processing_job)(owner=others.user)
    sockets = [watcher.token_socket(f"/ws/jobs/{job.pk}/") for _ in range(3)]
    for socket in sockets:
        await _open(socket)

    # When a fourth opens, it is accepted and closed with 4429; another user still connects
    fourth = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    connected, _ = await fourth.connect(timeout=5)
    assert connected and await _closed_with(fourth) == 4429
    theirs = others.token_socket(f"/ws/jobs/{their_job.pk}/")
    assert (await _open(theirs))["job_id"] == str(their_job.pk)

    # And once one closes, the user may open another
    await sockets[0].disconnect()
    again = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    assert (await _open(again))["job_id"] == str(job.pk)
    for socket in (*sockets[1:], again, theirs):
        await socket.disconnect()


# --- re-authorisation --------------------------------------------------------------------------------------

async def test_ws_guards__deleting_the_token_closes_its_sockets_4401(watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await _open(socket)

    from rest_framework.authtoken.models import Token

    await database_sync_to_async(lambda: Token.objects.filter(key=watcher.token).delete())()

    assert await _closed_with(socket) == 4401


async def test_ws_guards__deactivating_the_user_closes_session_and_token_sockets_4401(watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    sockets = [watcher.token_socket(f"/ws/jobs/{job.pk}/"), watcher.session_socket(f"/ws/projects/{job.project_id}/")]
    for socket in sockets:
        await _open(socket)

    def deactivate() -> None:
        watcher.user.is_active = False
        watcher.user.save(update_fields=["is_active"])

    await database_sync_to_async(deactivate)()

    assert [await _closed_with(s) for s in sockets] == [4401, 4401]


async def test_ws_guards__logging_out_closes_that_sessions_sockets_only(watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    session_socket = watcher.session_socket(f"/ws/jobs/{job.pk}/")
    token_socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await _open(session_socket)
    await _open(token_socket)

    def log_out() -> int:
        client = Client()
        client.cookies["sessionid"] = watcher.session_key
        return client.post("/accounts/logout/").status_code

    assert await database_sync_to_async(log_out)() in (200, 302)

    assert await _closed_with(session_socket) == 4401
    await token_socket.send_to(text_data="ping")
    assert await token_socket.receive_from(timeout=5) == "pong"
    await token_socket.disconnect()


async def test_ws_guards__giving_the_project_away_closes_the_old_owners_sockets_4404(watcher):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    sockets = [watcher.token_socket(f"/ws/jobs/{job.pk}/"), watcher.token_socket(f"/ws/projects/{job.project_id}/")]
    for socket in sockets:
        await _open(socket)

    def give_away() -> None:
        project = Project.objects.get(pk=job.project_id)
        project.owner = make_user()
        project.save()

    await database_sync_to_async(give_away)()

    assert [await _closed_with(s) for s in sockets] == [4404, 4404]


async def test_ws_guards__resume_rechecks_ownership(watcher):
    # Given an open socket, and the project moved to another owner without any signal (a bulk update)
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await _open(socket)
    other = await database_sync_to_async(make_user)()
    await database_sync_to_async(lambda: Project.objects.filter(pk=job.project_id).update(owner=other))()

    # When the client resumes from 0, Then it gets no event of the job and is closed with 4404
    await socket.send_json_to({"type": "resume", "after_seq": 0})
    assert await _closed_with(socket) == 4404


# --- a lost push on a quiet socket -------------------------------------------------------------------------

async def test_ws_guards__quiet_socket_fills_a_lost_final_push(tight, watcher):
    # Given a socket watching a running job, and the job's completion recorded but its push lost
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    snapshot = await _open(socket)
    await asyncio.sleep(1.2)  # past the connect catch-up (1 s), so only the quiet check can find it
    listeners.unregister_listener(publish.on_event_committed)
    try:
        await database_sync_to_async(services.job_complete)(job_id=job.pk, result={"artifacts": []})
    finally:
        listeners.register_listener(publish.on_event_committed)

    # When the socket hears nothing for QUIET_CHECK_S (0.6 s), Then it reads the seq and sends the event
    final = await socket.receive_json_from(timeout=5)
    assert (final["status"], final["seq"]) == ("completed", snapshot["seq"] + 1)
    assert final["seq"] == (await database_sync_to_async(GenerationJob.objects.get)(pk=job.pk)).seq
    await socket.disconnect()


# --- Origin ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("origin", [b"https://127.0.0.1:8000", b"http://127.0.0.1:9000", b"ws://127.0.0.1:8000",
                                    b"http://127.0.0.1", b"http://127.0.0.1:8000.evil.example", b"null"])
async def test_ws_guards__session_socket_from_another_scheme_or_port_is_refused(watcher, origin):
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.session_socket(f"/ws/jobs/{job.pk}/", origin=origin)
    connected, _ = await socket.connect(timeout=5)
    assert not connected, origin


async def test_ws_guards__trusted_origin_must_match_scheme_and_port(settings, watcher):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.example.org"]
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    allowed = [b"https://app.example.com", b"https://app.example.com:443", b"https://a.example.org"]
    refused = [b"http://app.example.com", b"https://app.example.com:8443", b"https://example.org.evil.com"]
    for origin in allowed + refused:
        socket = watcher.session_socket(f"/ws/jobs/{job.pk}/", origin=origin)
        connected, _ = await socket.connect(timeout=5)
        assert connected == (origin in allowed), origin
        if connected:
            await socket.disconnect()
