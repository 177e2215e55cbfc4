"""Serve the SSE stream paths through Django without a thread held for each stream's lifetime.

Upstream (Django 5.2, `ASGIHandler.__call__`): every request runs inside asgiref's ThreadSensitiveContext,
which gives the request its own sync thread until the response is finished. For a stream that lasts as
long as a job that was one idle thread per open stream (docs/BENCHMARKS.md, the patches table; proved by
tests/e2e/test_sse_stream.py::test_sse_stream__500_concurrent_streams_hold_no_thread_each). Stream
requests therefore go to `ASGIHandler.handle` directly: the view's one sync hop (auth, owner check) runs
in the process's shared sync thread, as the websocket consumers' database helpers do, and the stream
itself is an async generator on the event loop (realtime/sse.py). Every other request is untouched.
Outside the tested Django series the stock path is kept (streams then cost a thread each).
"""
from __future__ import annotations

import re
from typing import Any

from .versions import supported

PATCH = "django_asgi_streams"
TESTED = {"django": "==5.2.*"}

STREAM_PATH = re.compile(r"^/api/(?:jobs|projects)/[^/]+/stream/?$")


class StreamsWithoutThreadContext:
    """ASGI app: SSE stream paths to `django_app.handle`, everything else to `django_app` as before."""

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.enabled = supported(PATCH, TESTED) and callable(getattr(django_app, "handle", None))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.enabled and scope.get("type") == "http" and STREAM_PATH.match(scope.get("path", "")):
            await self.django_app.handle(scope, receive, send)
        else:
            await self.django_app(scope, receive, send)
