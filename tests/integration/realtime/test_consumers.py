"""The websocket protocol (CONTRACT.md "WebSockets") through the real ASGI app and channels-redis layer."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from config.asgi import application
from jobs import listeners, services
from realtime import events, publish
from tests.factories import make_job, make_processing_job, make_project

from .conftest import EVIL_ORIGIN, GOOD_ORIGIN, Watcher

pytestmark = pytest.mark.django_db(transaction=True)


# --- helpers -------------------------------------------------------------------------------------------

async def open_socket(socket: WebsocketCommunicator) -> dict[str, Any]:
    """Connect and return the first message (the snapshot)."""
    connected, _ = await socket.connect(timeout=5)
    assert connected
    return await socket.receive_json_from(timeout=5)


async def close_code(socket: WebsocketCommunicator) -> int | None:
    """Connect a socket the server is expected to accept and then close; return the close code."""
    connected, _ = await socket.connect(timeout=5)
    assert connected, "the server must accept before closing, so the client sees the code"
    output = await socket.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    return output.get("code")


async def receive_all(socket: WebsocketCommunicator, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    return [await socket.receive_json_from(timeout=timeout) for _ in range(count)]


def job_with_history(owner: Any) -> Any:
    """A processing job with five events: created, started, progress 10, 20, 30."""
    job = make_processing_job(owner=owner)
    for value in (10, 20, 30):
        assert services.job_report_progress(job_id=job.pk, progress=value, stage="Generating images")
    job.refresh_from_db()
    assert job.seq == 5
    return job


report_progress = database_sync_to_async(services.job_report_progress)


# --- auth, close codes, Origin ------------------------------------------------------------------------

async def test_job_socket__token_auth_sends_snapshot(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    snapshot = await open_socket(socket)
    assert set(snapshot) == events.STATUS_KEYS
    assert snapshot == {"type": "status", "job_id": str(job.pk), "status": "processing", "progress": 30.0,
                        "current_stage": "Generating images", "error_message": None, "seq": 5, "result": None,
                        "queue_position": None}
    await socket.disconnect()


async def test_job_socket__session_auth_with_allowed_origin_and_no_trailing_slash(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.session_socket(f"/ws/jobs/{job.pk}", origin=GOOD_ORIGIN)
    snapshot = await open_socket(socket)
    assert (snapshot["job_id"], snapshot["status"], snapshot["seq"]) == (str(job.pk), "queued", 1)
    await socket.disconnect()


async def test_project_socket__snapshot_per_job_both_auth_ways(watcher: Watcher) -> None:
    project = await database_sync_to_async(make_project)(owner=watcher.user)
    first = await database_sync_to_async(make_job)(project=project)
    second = await database_sync_to_async(make_processing_job)(project=project)
    for socket in (watcher.token_socket(f"/ws/projects/{project.pk}/"),
                   watcher.session_socket(f"/ws/projects/{project.pk}")):
        connected, _ = await socket.connect(timeout=5)
        assert connected
        snapshots = await receive_all(socket, 2)
        # newest first, one status message per job
        assert [(m["job_id"], m["status"], m["seq"]) for m in snapshots] == [
            (str(second.pk), "processing", 2), (str(first.pk), "queued", 1)]
        assert await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()


async def test_job_socket__anonymous_is_closed_4401(user) -> None:
    job = await database_sync_to_async(make_job)(owner=user)
    for path in (f"/ws/jobs/{job.pk}/", f"/ws/projects/{job.project_id}/"):
        assert await close_code(WebsocketCommunicator(application, path)) == 4401


async def test_job_socket__unknown_token_is_closed_4401(user) -> None:
    job = await database_sync_to_async(make_job)(owner=user)
    for query in ("token=not-a-real-token", "token="):
        socket = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/?{query}")
        assert await close_code(socket) == 4401


async def test_job_socket__anonymous_with_a_foreign_origin_still_gets_4401(user) -> None:
    """The Origin check guards cookie sessions only; without credentials the answer is 4401."""
    job = await database_sync_to_async(make_job)(owner=user)
    socket = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=[(b"origin", EVIL_ORIGIN)])
    assert await close_code(socket) == 4401


async def test_job_socket__other_users_or_unknown_job_is_closed_4404(watcher: Watcher, other_watcher: Watcher) -> None:
    theirs = await database_sync_to_async(make_job)(owner=other_watcher.user)
    for path in (f"/ws/jobs/{theirs.pk}/", f"/ws/jobs/{uuid.uuid4()}/", "/ws/jobs/not-a-uuid/",
                 f"/ws/projects/{theirs.project_id}/", f"/ws/projects/{uuid.uuid4()}/", "/ws/projects/42/"):
        assert await close_code(watcher.token_socket(path)) == 4404, path
    assert await close_code(watcher.session_socket(f"/ws/jobs/{theirs.pk}/")) == 4404


async def test_session_socket__foreign_or_missing_origin_is_refused(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    for origin in (EVIL_ORIGIN, None):
        socket = watcher.session_socket(f"/ws/jobs/{job.pk}/", origin=origin)
        connected, _ = await socket.connect(timeout=5)
        # refused before accept: a browser sees HTTP 403 and the page learns nothing
        assert not connected, origin


async def test_token_socket__needs_no_origin_and_ignores_a_foreign_one(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    for origin in (None, EVIL_ORIGIN):
        socket = watcher.token_socket(f"/ws/jobs/{job.pk}/", origin=origin)
        assert (await open_socket(socket))["job_id"] == str(job.pk)
        await socket.disconnect()


# --- client messages -----------------------------------------------------------------------------------

async def test_job_socket__ping_both_forms(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await socket.send_to(text_data="ping")
    assert await socket.receive_from(timeout=5) == "pong"
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()


async def test_job_socket__refresh_both_forms_sends_a_fresh_snapshot(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    assert (await open_socket(socket))["seq"] == 2
    # a change recorded without a push (as if the channel layer dropped it)
    listeners.unregister_listener(publish.on_event_committed)
    try:
        await report_progress(job_id=job.pk, progress=40, stage="Rendering")
    finally:
        listeners.register_listener(publish.on_event_committed)
    await socket.send_to(text_data="refresh")
    fresh = await socket.receive_json_from(timeout=5)
    assert (fresh["seq"], fresh["progress"], fresh["current_stage"]) == (3, 40.0, "Rendering")
    await socket.send_json_to({"type": "refresh"})
    assert await socket.receive_json_from(timeout=5) == fresh
    await socket.disconnect()


async def test_job_socket__resume_from_zero_replays_every_event_in_order(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await socket.send_json_to({"type": "resume", "after_seq": 0})
    replayed = await receive_all(socket, 5)
    assert [m["seq"] for m in replayed] == [1, 2, 3, 4, 5]
    assert [m["status"] for m in replayed] == ["queued", "processing", "processing", "processing", "processing"]
    assert [m["progress"] for m in replayed] == [0.0, 0.0, 10.0, 20.0, 30.0]
    assert all(set(m) == events.STATUS_KEYS and m["type"] == "status" for m in replayed)
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_job_socket__resume_from_latest_seq_sends_nothing_then_continues_live(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await socket.send_json_to({"type": "resume", "after_seq": 5})
    assert await socket.receive_nothing(timeout=0.3)
    await report_progress(job_id=job.pk, progress=50)
    live = await socket.receive_json_from(timeout=5)
    assert (live["seq"], live["progress"]) == (6, 50.0)
    await socket.disconnect()


async def test_job_socket__resume_then_live_has_no_duplicate_or_gap(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await report_progress(job_id=job.pk, progress=40)
    assert (await socket.receive_json_from(timeout=5))["seq"] == 6
    # resume from an older seq while a new event is committed and pushed at the same time
    await socket.send_json_to({"type": "resume", "after_seq": 3})
    await report_progress(job_id=job.pk, progress=50)
    await report_progress(job_id=job.pk, progress=60)
    received = await receive_all(socket, 5)
    assert [m["seq"] for m in received] == [4, 5, 6, 7, 8]
    assert received[-1]["progress"] == 60.0
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_job_socket__terminal_event_replays_with_result(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    await database_sync_to_async(services.job_complete)(job_id=job.pk, result={"artifacts": [], "scenes": 2})
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    snapshot = await open_socket(socket)
    assert (snapshot["status"], snapshot["progress"], snapshot["result"]) == ("completed", 100.0, {"artifacts": [], "scenes": 2})
    await socket.send_json_to({"type": "resume", "after_seq": 0})
    replayed = await receive_all(socket, 3)
    assert [m["result"] for m in replayed] == [None, None, {"artifacts": [], "scenes": 2}]
    assert replayed[-1] == snapshot
    await socket.disconnect()


async def test_job_socket__failed_terminal_event_carries_the_error(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await database_sync_to_async(services.job_fail)(job_id=job.pk, error_message="The image backend refused")
    live = await socket.receive_json_from(timeout=5)
    assert (live["status"], live["error_message"], live["seq"]) == ("failed", "The image backend refused", 3)
    await socket.send_json_to({"type": "resume", "after_seq": 2})
    assert await socket.receive_json_from(timeout=5) == live
    await socket.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        "not json", "[1, 2]", '"ping"', "42", "{}", '{"type": 5}', '{"type": "nope"}',
        '{"type": "resume"}', '{"type": "resume", "after_seq": -1}', '{"type": "resume", "after_seq": "3"}',
        '{"type": "resume", "after_seq": 1.5}', '{"type": "resume", "after_seq": true}',
        '{"type": "resume", "after_seq": 99999999999999999999}', '{"type": "resume", "after_seq": 1, "job_id": "x"}',
        '{"type": "ping", "pad": "' + "x" * 5000 + '"}',
    ],
)
async def test_job_socket__malformed_frame_gets_an_error_and_stays_open(watcher: Watcher, frame: str) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await socket.send_to(text_data=frame)
    answer = await socket.receive_json_from(timeout=5)
    assert answer["type"] == "error" and isinstance(answer["message"], str) and answer["message"]
    await socket.send_to(text_data="ping")
    assert await socket.receive_from(timeout=5) == "pong"
    await socket.disconnect()


async def test_job_socket__binary_frame_gets_an_error_and_stays_open(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_json_from(timeout=5))["type"] == "error"
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()


async def test_project_socket__resume_needs_a_job_of_the_project(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    elsewhere = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/projects/{job.project_id}/")
    await open_socket(socket)
    for frame in ({"type": "resume", "after_seq": 0}, {"type": "resume", "after_seq": 0, "job_id": str(elsewhere.pk)}):
        await socket.send_json_to(frame)
        assert (await socket.receive_json_from(timeout=5))["type"] == "error"
    await socket.send_json_to({"type": "resume", "after_seq": 2, "job_id": str(job.pk)})
    assert [m["seq"] for m in await receive_all(socket, 3)] == [3, 4, 5]
    await socket.disconnect()


# --- pushes --------------------------------------------------------------------------------------------

async def test_publish__committed_event_reaches_job_and_project_streams(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    job_socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    project_socket = watcher.session_socket(f"/ws/projects/{job.project_id}/")
    await open_socket(job_socket)
    await open_socket(project_socket)
    await report_progress(job_id=job.pk, progress=12.5, stage="Parsing script")
    expected = {"type": "status", "job_id": str(job.pk), "status": "processing", "progress": 12.5,
                "current_stage": "Parsing script", "error_message": None, "seq": 3, "result": None,
                "queue_position": None}
    assert await job_socket.receive_json_from(timeout=5) == expected
    assert await project_socket.receive_json_from(timeout=5) == expected
    await job_socket.disconnect()
    await project_socket.disconnect()


async def test_publish__from_a_plain_thread_uses_the_background_sender(watcher: Watcher) -> None:
    """What a Celery worker does: sync code, no event loop; flush() waits until it was sent."""
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)

    def worker_side() -> bool:
        # asyncio.to_thread sets none of asgiref's thread-locals: this is the no-loop path
        assert publish._caller_loop() is None
        services.job_report_progress(job_id=job.pk, progress=77)
        return publish.flush(5)

    assert await asyncio.to_thread(worker_side)
    message = await socket.receive_json_from(timeout=5)
    assert (message["seq"], message["progress"]) == (3, 77.0)
    await socket.disconnect()


async def test_publish__a_burst_from_a_plain_thread_arrives_complete_and_in_order(watcher: Watcher) -> None:
    """The background sender sends what queued meanwhile in one pipelined round trip: order and completeness
    per job and per project hold across those batches."""
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    job_socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    project_socket = watcher.token_socket(f"/ws/projects/{job.project_id}/")
    await open_socket(job_socket)
    await open_socket(project_socket)

    def worker_side() -> bool:
        for step in range(1, 101):
            services.job_report_progress(job_id=job.pk, progress=step * 0.5)
        return publish.flush(10)

    assert await asyncio.to_thread(worker_side)
    for socket in (job_socket, project_socket):
        received = await receive_all(socket, 100)
        assert [m["seq"] for m in received] == list(range(3, 103))
        assert received[-1]["progress"] == 50.0
        await socket.disconnect()


async def test_job_socket__gap_in_live_pushes_is_filled_from_the_database(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    listeners.unregister_listener(publish.on_event_committed)  # seq 3 and 4 are recorded but never pushed
    try:
        await report_progress(job_id=job.pk, progress=10)
        await report_progress(job_id=job.pk, progress=20)
    finally:
        listeners.register_listener(publish.on_event_committed)
    await report_progress(job_id=job.pk, progress=30)
    received = await receive_all(socket, 3)
    assert [(m["seq"], m["progress"]) for m in received] == [(3, 10.0), (4, 20.0), (5, 30.0)]
    await socket.disconnect()


async def test_job_socket__stale_push_is_dropped(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)  # seq 5
    old = events.status_message(job_id=job.pk, status="processing", progress=20, current_stage="",
                                error_message=None, seq=4, result=None)
    await get_channel_layer().group_send(events.job_group_name(job.pk), events.group_event(old))
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_job_socket__push_without_a_preencoded_frame_is_still_sent(watcher: Watcher) -> None:
    job = await database_sync_to_async(job_with_history)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)  # seq 5
    new = events.status_message(job_id=job.pk, status="processing", progress=60, current_stage="Images",
                                error_message=None, seq=6, result=None)
    payload_only = {k: v for k, v in events.group_event(new).items() if k != "text"}  # a previous release's
    await get_channel_layer().group_send(events.job_group_name(job.pk), payload_only)
    assert await receive_all(socket, 1) == [new]
    await socket.disconnect()


async def test_job_socket__disconnect_leaves_the_group(watcher: Watcher) -> None:
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    await open_socket(socket)
    group = events.job_group_name(job.pk)
    assert await group_members(group) == 1
    await socket.disconnect()
    assert await group_members(group) == 0


async def group_members(group: str) -> int:
    """How many channels the layer holds in a group (both channels-redis layers, read from their state)."""
    layer = get_channel_layer()
    if hasattr(layer, "_get_layer"):  # RedisPubSubChannelLayer: the groups live in this process
        return len(layer._get_layer().groups.get(layer._get_layer()._get_group_channel_name(group), set()))
    key = layer._group_key(group)
    async with layer.connection(layer.consistent_hash(group)) as connection:
        return await connection.zcard(key)


async def test_job_socket__an_event_whose_push_was_lost_right_after_connect_arrives_by_catch_up(watcher: Watcher) -> None:
    # Given a connected client, and an event committed while the push path is unavailable (the instant
    # before a pub/sub subscription takes effect looks the same to the client: no live message)
    job = await database_sync_to_async(make_processing_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    snapshot = await open_socket(socket)
    listeners.unregister_listener(publish.on_event_committed)
    try:
        await database_sync_to_async(services.job_cancel)(job_id=job.pk)
    finally:
        listeners.register_listener(publish.on_event_committed)
    # Then the consumer's catch-up re-read delivers it without any client action
    message = await socket.receive_json_from(timeout=5)
    assert (message["seq"], message["status"]) == (snapshot["seq"] + 1, "cancelled")
    await socket.disconnect()
