"""Reading a test client's response body, streamed or not."""
from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync


def response_body(response: Any) -> bytes:
    """The whole body; a streamed one must be asynchronous (a synchronous stream is read whole under ASGI)."""
    if not response.streaming:
        return response.content
    assert response.is_async, "a synchronous stream is read whole into memory under ASGI"

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()
