"""daphne's websockets with a cap on unsent bytes per socket and a keep-alive that a chatty peer cannot skip.

Upstream (daphne 4.2, `Server.handle_reply` → `WebSocketProtocol.serverSend` → autobahn `sendMessage`):
every frame an application sends is appended to Twisted's write buffer at once, without limit, so a client
that asks for snapshots and never reads grows the process by whatever it asks for (no upstream issue
tracks it; django/daphne#182 is the nearest, about memory under load). And a peer that keeps sending is
never dropped for not reading: daphne's `onMessage` counts every incoming frame as proof of life
(`last_ping`), so it is not pinged, and autobahn cancels a pending ping's timeout on any incoming data
frame (`autoPingRestartOnAnyTraffic`, crossbario/autobahn-python#1327). Here:

- a send that leaves more than `WEBSOCKETS["SEND_BUFFER_BYTES"]` unsent waits (the consumer's `await send`
  does) until the reader takes it below that; a reader that has not done so within
  `WEBSOCKETS["SEND_STALL_S"]` is closed with 4413, and sends to a closing socket are dropped;
- pings go out every `--ping-interval` whatever the peer sends, and only a pong answers one: no pong within
  `--ping-timeout` drops the connection;
- the closing handshake waits `WEBSOCKETS["CLOSE_HANDSHAKE_S"]` for the peer's reply before the
  connection is aborted (autobahn's 1 s is too short for a flooding client's reply on a busy process);
- a `websocket.close` after accepting carries its ASGI `reason` into the close frame (daphne's
  `serverClose` sends the code only), so a client can tell why (realtime/layer_down.py's 4503);
- once a request was upgraded, its HTTP channel and request objects are let go. Upstream leaves the
  `HTTPChannel` registered as the TCP transport's producer, so it and the `WebRequest` in its `requests`
  (parsed headers, body buffer, ~30 attributes each) live as long as the websocket, doing nothing: with
  the request never finished, `HTTPChannel.pauseProducing` does not pause the transport.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .versions import supported

PATCH = "daphne_websocket"
TESTED = {"daphne": "==4.2.*", "autobahn": ">=24.4"}
CLOSE_SLOW_READER = 4413
POLL_S = 0.05

logger = logging.getLogger("patches")

# Read from settings.WEBSOCKETS on first use (daphne imports this before Django is set up).
_limits: dict[str, float] = {}


def _limit(name: str, default: float) -> float:
    if name not in _limits:
        from django.conf import settings

        _limits[name] = float((getattr(settings, "WEBSOCKETS", None) or {}).get(name, default))
    return _limits[name]


def unsent_bytes(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet (0 for other transports)."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:
        return 0


async def _hold_back(protocol: Any) -> None:
    """Wait while the socket holds more than the cap unsent; close it (4413) if the reader stalls."""
    cap = _limit("SEND_BUFFER_BYTES", 1024 * 1024)
    if unsent_bytes(protocol.transport) <= cap:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _limit("SEND_STALL_S", 10.0)
    while unsent_bytes(protocol.transport) > cap:
        if protocol.state != protocol.STATE_OPEN:
            return
        if loop.time() >= deadline:
            logger.warning("websocket %s closed: %d bytes unsent for %.0f s (slow reader)",
                           protocol.client_addr, unsent_bytes(protocol.transport), _limit("SEND_STALL_S", 10.0))
            # The peer may never read this frame; autobahn drops the TCP connection when the closing
            # handshake times out (closeHandshakeTimeout), which frees the buffer.
            protocol.sendClose(code=CLOSE_SLOW_READER, reason="slow reader: too much unsent data")
            return
        await asyncio.sleep(POLL_S)


def install() -> None:
    """Patch daphne's server and websocket protocol (web processes only); a no-op outside the tested versions."""
    if not supported(PATCH, TESTED):
        return
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

    stock_handle_reply = Server.handle_reply
    stock_on_message = WebSocketProtocol.onMessage

    async def handle_reply(self: Server, protocol: Any, message: dict[str, Any]) -> None:
        websocket = isinstance(protocol, WebSocketProtocol)
        if websocket and message.get("type") == "websocket.send" and protocol.state in (
                protocol.STATE_CLOSING, protocol.STATE_CLOSED):
            return  # closed for a slow reader or a ping timeout: autobahn would raise Disconnected
        if websocket and message.get("type") == "websocket.close" and message.get("reason") and \
                protocol.state == protocol.STATE_OPEN:
            # Truncated to the 123 bytes a close frame holds (autobahn refuses more).
            reason = str(message["reason"]).encode("utf-8")[:123].decode("utf-8", "ignore")
            protocol.sendClose(code=message.get("code") or 1000, reason=reason)
            return
        await stock_handle_reply(self, protocol, message)
        if websocket and message.get("type") == "websocket.send":
            await _hold_back(protocol)

    def on_message(self: WebSocketProtocol, payload: bytes, isBinary: bool) -> None:
        # Incoming frames are not proof that the peer reads: keep the ping schedule they would reset.
        last_ping = self.last_ping
        stock_on_message(self, payload, isBinary)
        self.last_ping = last_ping

    stock_factory_init = WebSocketFactory.__init__

    def factory_init(self: WebSocketFactory, *args: Any, **kwargs: Any) -> None:
        stock_factory_init(self, *args, **kwargs)
        # autobahn waits 1 s for the peer's closing frame, then aborts the TCP connection (a reset). A client
        # that flooded the socket has its reply queued behind the flood, which a busy process reads slowly:
        # after a reset it may never see the close code (4429) that was sent first. Give it longer.
        self.setProtocolOptions(autoPingRestartOnAnyTraffic=False,  # daphne's own options leave it alone
                                closeHandshakeTimeout=_limit("CLOSE_HANDSHAKE_S", 5.0))

    from daphne.http_protocol import WebRequest

    stock_process = WebRequest.process

    def process(self: WebRequest) -> Any:
        result = stock_process(self)
        _release_upgraded(self, WebSocketProtocol)
        return result

    Server.handle_reply = handle_reply
    WebSocketProtocol.onMessage = on_message
    WebSocketFactory.__init__ = factory_init
    WebRequest.process = process


def _release_upgraded(request: Any, websocket_protocol: type) -> None:
    """After daphne handed a request's TCP transport to a websocket protocol: unregister the HTTP channel
    from the transport, so the channel and the request are freed (plain TCP only; TLS wrappers keep theirs)."""
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if request.transport is not None or transport is None:
        return  # not upgraded (daphne clears the request's transport when it hands it over)
    if isinstance(getattr(transport, "protocol", None), websocket_protocol) and transport.producer is channel:
        transport.unregisterProducer()
