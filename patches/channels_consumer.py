"""channels' consumer loop without a task and an `asyncio.wait` per message, and without a thread hop.

Upstream (channels 4.3, `AsyncConsumer.__call__` → `channels.utils.await_many_dispatch`): for every
message it creates a fresh receive task per source and `asyncio.wait`s on them, and `AsyncConsumer.dispatch`
awaits `aclose_old_connections()` (one trip through the process's thread-sensitive executor) before every
handler. No upstream issue tracks that per-message cost; the nearest are django/channels#1924 (the same
loop, about concurrency) and django/channels#2228 (an open PR about the results it keeps alive). Here one
long-lived task per source feeds an inbox that the consumer drains one message at a time, in arrival order
as before, and dispatch skips the connection check: our consumers touch the ORM only inside
database_sync_to_async helpers, which close stale connections themselves. Figures: docs/BENCHMARKS.md.
"""
from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from .versions import supported

PATCH = "channels_consumer"
TESTED = {"channels": "==4.3.*"}


class _SourceFailed:
    """A receive callable raised: the dispatcher re-raises it, as await_many_dispatch would."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Inbox:
    """A single-consumer queue: a deque and one waiter (an asyncio.Queue per socket costs more memory and
    wake-up bookkeeping on many idle sockets). It counts the client's messages waiting in it, so that a
    client sending faster than its consumer works (e.g. while a send waits for a slow reader) is bounded."""

    __slots__ = ("items", "waiter", "client_waiting")

    def __init__(self) -> None:
        # Made on the first message and dropped once drained: an empty deque is 760 bytes, on every idle socket.
        self.items: deque[Any] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.client_waiting = 0

    def put_nowait(self, item: Any, *, first: bool = False) -> None:
        if self.items is None:
            self.items = deque()
        if first:
            self.items.appendleft(item)
        else:
            self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        item = self.items.popleft()
        if not self.items:
            self.items = None
        return item


# What the dispatcher hands the consumer, once and before anything else, when more than `client_limit`
# of the client's messages wait: later ones are dropped until the consumer has caught up.
OVERFLOW = {"type": "websocket.overflow"}


async def _dispatch_all(sources: list[Any], dispatch: Any, client_limit: int | None = None) -> None:
    """Pass every message from `sources` (receive callables; the first is the client's) to `dispatch`, one
    at a time, until it raises; past `client_limit` waiting client messages, OVERFLOW instead."""
    inbox = _Inbox()
    overflowed = False

    async def pump(receive: Any, client: bool) -> None:
        nonlocal overflowed
        try:
            while True:
                message = await receive()
                if client and client_limit is not None and message.get("type") == "websocket.receive":
                    if inbox.client_waiting >= client_limit:
                        if not overflowed:
                            overflowed = True
                            inbox.put_nowait(OVERFLOW, first=True)
                        continue
                    inbox.client_waiting += 1
                inbox.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the dispatcher, which raises it
            inbox.put_nowait(_SourceFailed(exc))

    pumps = [asyncio.ensure_future(pump(receive, n == 0)) for n, receive in enumerate(sources)]
    try:
        while True:
            message = await inbox.get()
            if isinstance(message, _SourceFailed):
                raise message.error
            if client_limit is not None and message.get("type") == "websocket.receive":
                inbox.client_waiting -= 1
            await dispatch(message)
    finally:
        for task in pumps:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


class InboxDispatchMixin:
    """Put before AsyncConsumer (or a subclass) in the bases; outside the tested channels it does nothing.

    `inbox_client_limit` (None: unbounded) caps the client's messages waiting for the consumer; past it
    the consumer gets one `websocket.overflow` message (handler `websocket_overflow`) first.
    """

    inbox_client_limit: int | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """AsyncConsumer.__call__ (async consumers only), with `_dispatch_all` for `await_many_dispatch`."""
        if not supported(PATCH, TESTED):
            return await super().__call__(scope, receive, send)  # type: ignore[misc]
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)  # type: ignore[attr-defined]
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        try:
            await _dispatch_all(sources, self.dispatch, self.inbox_client_limit)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a message to its handler, without channels' per-message `aclose_old_connections`."""
        if not supported(PATCH, TESTED):
            return await super().dispatch(message)  # type: ignore[misc]
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
