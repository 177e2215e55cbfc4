"""The per-message fast paths of the websocket side: the consumers' dispatch loop, the decode-once
serializer of the channel layer, and the pre-encoded frame of a group event."""
from __future__ import annotations

import asyncio
import json

import pytest
from channels_redis.serializers import registry

from realtime import events
from patches.channels_consumer import _dispatch_all
from patches.channels_redis_pubsub import _DecodeOnceSerializerProxy


async def test_dispatch_all__one_at_a_time_in_arrival_order_per_source() -> None:
    a: asyncio.Queue = asyncio.Queue()
    b: asyncio.Queue = asyncio.Queue()
    seen: list[str] = []
    running = 0

    async def dispatch(message: str) -> None:
        nonlocal running
        running += 1
        assert running == 1  # never two handlers at once
        await asyncio.sleep(0)
        seen.append(message)
        running -= 1
        if message == "a-stop":
            raise LookupError("stop")

    for item in ("a1", "a2", "a3"):
        a.put_nowait(item)
    for item in ("b1", "b2"):
        b.put_nowait(item)
    task = asyncio.ensure_future(_dispatch_all([a.get, b.get], dispatch))
    await asyncio.sleep(0.05)
    a.put_nowait("a-stop")
    with pytest.raises(LookupError):
        await asyncio.wait_for(task, 2)
    assert [m for m in seen if m.startswith("a")] == ["a1", "a2", "a3", "a-stop"]
    assert [m for m in seen if m.startswith("b")] == ["b1", "b2"]


async def test_dispatch_all__a_failing_source_ends_it_and_cancels_the_others() -> None:
    other_cancelled = asyncio.Event()

    async def failing() -> str:
        raise ConnectionError("layer gone")

    async def waiting() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            other_cancelled.set()
            raise
        return "never"

    async def dispatch(message: str) -> None:
        raise AssertionError("nothing to dispatch")

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(_dispatch_all([failing, waiting], dispatch), 2)
    assert other_cancelled.is_set()


def test_decode_once__same_bytes_decoded_once_and_shared() -> None:
    serializer = _DecodeOnceSerializerProxy(registry.get_serializer("msgpack"))
    raw = serializer.serialize(events.group_event(events.pong_message()))
    first, second = serializer.deserialize(raw), serializer.deserialize(raw)
    assert first is second and first["payload"] == {"type": "pong"}
    other = serializer.serialize({"type": "x"})
    assert serializer.deserialize(other) == {"type": "x"}
    # An equal but different bytes object (another message) is decoded on its own.
    copy = bytes(bytearray(raw))
    assert serializer.deserialize(copy) == first and serializer.deserialize(copy) is not first


def test_group_event__carries_the_frame_clients_receive() -> None:
    message = events.status_message(job_id="j", status="processing", progress=12.5, current_stage="Images",
                                    error_message=None, seq=3, result=None)
    event = events.group_event(message)
    assert event["payload"] == message and json.loads(event["text"]) == message
    assert event["text"] == json.dumps(message)  # what send_json would have sent


async def test_inbox__fifo_and_wakes_its_one_reader() -> None:
    from patches.channels_consumer import _Inbox

    inbox = _Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await asyncio.wait_for(reader, 1) == 1
    assert await inbox.get() == 2
    cancelled = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    inbox.put_nowait(3)  # a cancelled reader leaves nothing behind
    assert await asyncio.wait_for(inbox.get(), 1) == 3
