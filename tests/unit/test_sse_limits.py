"""realtime/sse_limits.py: a stream's slot is given back when the stream ends or is closed, not when collected."""
from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

from django.test import override_settings

from realtime.sse_limits import open_streams, stream_slot_take

USER = "sse-limits-user"


async def forever() -> AsyncIterator[bytes]:
    while True:
        yield b": keep-alive\n\n"
        await asyncio.sleep(0)


@override_settings(SSE_STREAMS_PER_USER=1)
def test_stream_slot_take__a_closed_stream_frees_its_slot_without_garbage_collection() -> None:
    # given one stream taken (the cap) and iterated, while nothing is collected
    gc.disable()
    try:
        counted = stream_slot_take(user_id=USER, stream=forever())
        assert counted is not None and stream_slot_take(user_id=USER, stream=forever()) is None
        keep = [counted]  # still referenced, as a reference cycle would keep it

        async def read_then_close() -> None:
            await counted.__anext__()
            await counted.aclose()  # what Django's handler does when the client disconnects

        # when it is closed
        asyncio.run(read_then_close())

        # then its slot is free at once, and a second close counts nothing
        assert open_streams(USER) == 0 and keep
        asyncio.run(counted.aclose())
        again = stream_slot_take(user_id=USER, stream=forever())
        assert again is not None and open_streams(USER) == 1
        del again
        gc.collect()
    finally:
        gc.enable()
    assert open_streams(USER) == 0  # never started: given back when collected
