"""The SSE routing patch: stream paths skip Django's per-request thread context on the tested Django only."""
from __future__ import annotations

from typing import Any

from patches import django_asgi_streams
from tests.unit.patches.test_versions import covers


class _RecordingHandler:
    """Stands in for Django's ASGIHandler: records whether `__call__` or `handle` served a request."""

    def __init__(self) -> None:
        self.served: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.served.append(("__call__", scope["path"]))

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.served.append(("handle", scope["path"]))


async def _serve(*paths: str) -> list[tuple[str, str]]:
    handler = _RecordingHandler()
    app = django_asgi_streams.StreamsWithoutThreadContext(handler)
    for path in paths:
        await app({"type": "http", "path": path}, None, None)
    return handler.served


def test_django_asgi_streams__tested_versions_cover_the_pinned_django() -> None:
    assert covers(django_asgi_streams.TESTED, "django")


async def test_django_asgi_streams__only_stream_paths_skip_the_thread_context() -> None:
    served = await _serve("/api/jobs/abc/stream/", "/api/projects/abc/stream", "/api/jobs/abc/",
                          "/api/jobs/abc/stream/extra")

    assert served == [("handle", "/api/jobs/abc/stream/"), ("handle", "/api/projects/abc/stream"),
                      ("__call__", "/api/jobs/abc/"), ("__call__", "/api/jobs/abc/stream/extra")]


async def test_django_asgi_streams__outside_the_tested_django_every_request_takes_the_stock_path(
        installed, caplog) -> None:
    installed(django="9.0.0")

    assert await _serve("/api/jobs/abc/stream/") == [("__call__", "/api/jobs/abc/stream/")]
    assert "django 9.0.0 is outside the tested versions" in caplog.text
