"""daphne's per-connection input queue as a LightQueue instead of an `asyncio.Queue`.

Upstream (daphne 4.2, `Server.create_application`): every connection's application gets a fresh
`asyncio.Queue()` as its `receive`, about 3.3 KB while empty (patches/light_queue.py), held as long as the
connection: on a web process holding 19,000 idle websockets, ~60 MB of it. No upstream issue tracks it.
Here `create_application` is upstream's, with the queue swapped; the protocols only `put_nowait` into it.
"""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from .light_queue import LightQueue
from .versions import supported

PATCH = "daphne_input_queue"
TESTED = {"daphne": "==4.2.*"}


def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> LightQueue | None:
    """daphne 4.2's Server.create_application, line for line, with a LightQueue."""
    assert "application_instance" not in self.connections[protocol]
    input_queue = LightQueue()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = self.application(scope=scope, receive=input_queue.get,
                                            send=partial(self.handle_reply, protocol))
    if protocol not in self.connections:
        return None
    self.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance, loop=asyncio.get_event_loop())
    return input_queue


def install_light_input_queues() -> None:
    """Patch daphne's Server (web processes only); a no-op outside the tested daphne."""
    if not supported(PATCH, TESTED):
        return
    from daphne.server import Server

    Server.create_application = create_application
