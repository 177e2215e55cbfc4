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
  `--ping-timeout` drops the connection.
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
            # handshake times out (closeHandshakeTimeout, 1 s), which frees the buffer.
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
        self.setProtocolOptions(autoPingRestartOnAnyTraffic=False)  # daphne's own options leave it alone

    Server.handle_reply = handle_reply
    WebSocketProtocol.onMessage = on_message
    WebSocketFactory.__init__ = factory_init
