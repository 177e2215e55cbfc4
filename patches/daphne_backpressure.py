"""Backpressure for daphne's HTTP responses: a body chunk is sent only once the client took the previous ones.

daphne's ASGI `send` writes each `http.response.body` into Twisted's transport and returns at once, so an
application streaming a file to a slow client fills the process's memory at disk speed. Here each HTTP
request registers a push producer with its Twisted channel while its body streams; Twisted pauses it when
the transport's buffer passes 64 KiB and resumes it when the buffer drained, and `send` awaits that.
Upstream: daphne 4.2 has no flow control on HTTP response bodies (the ASGI spec lets `send` block for
exactly this; uvicorn and hypercorn do).
"""
from __future__ import annotations

import asyncio
from typing import Any

from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from .versions import supported

PATCH = "daphne_backpressure"
TESTED = {"daphne": "==4.2.*", "twisted": ">=24.7,<27"}
_ATTRIBUTE = "_vg_drain"


@implementer(IPushProducer)
class DrainWaiter:
    """Paused by Twisted while the client's connection is backed up; `wait()` returns once it drained."""

    def __init__(self) -> None:
        self._resumed: asyncio.Future | None = None

    def pauseProducing(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.get_event_loop().create_future()

    def resumeProducing(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def stopProducing(self) -> None:  # the connection is going away: nothing left to wait for
        self.resumeProducing()

    async def wait(self) -> None:
        if self._resumed is not None:
            await self._resumed


def _release(request: Any) -> None:
    waiter = request.__dict__.pop(_ATTRIBUTE, None)
    if waiter is not None:
        if getattr(request, "producer", None) is waiter:
            request.unregisterProducer()
        waiter.stopProducing()


def install_http_backpressure() -> None:
    """Patch daphne's Server.handle_reply and WebRequest so streamed HTTP bodies wait for the client."""
    if not supported(PATCH, TESTED):
        return
    from daphne.http_protocol import WebRequest
    from daphne.server import Server

    handle_reply = Server.handle_reply

    async def handle_reply_with_backpressure(self: Server, protocol: Any, message: dict) -> None:
        streaming = (isinstance(protocol, WebRequest) and message.get("type") == "http.response.body"
                     and message.get("more_body", False))
        if not streaming:
            if isinstance(protocol, WebRequest) and message.get("type") == "http.response.body":
                _release(protocol)  # the last chunk: finish() must not find our producer registered
            await handle_reply(self, protocol, message)
            return
        waiter = protocol.__dict__.get(_ATTRIBUTE)
        if waiter is None and not protocol.finished and protocol.channel is not None and protocol.producer is None:
            waiter = protocol.__dict__[_ATTRIBUTE] = DrainWaiter()
            protocol.registerProducer(waiter, True)
            if getattr(protocol.channel, "_waitingForTransport", False):
                waiter.pauseProducing()  # the channel was paused before we registered: Twisted won't tell us
        await handle_reply(self, protocol, message)
        if waiter is not None:
            await waiter.wait()

    Server.handle_reply = handle_reply_with_backpressure

    for name in ("finish", "connectionLost"):
        original = getattr(WebRequest, name)

        def released(self: WebRequest, *args: Any, _original: Any = original) -> Any:
            _release(self)
            return _original(self, *args)

        setattr(WebRequest, name, released)
