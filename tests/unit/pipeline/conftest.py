"""Fixtures for pipeline unit tests: small configs and a real local HTTP server standing in for backends."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobs.pipeline import Artifact, PipelineConfig, StageFiles
from jobs.pipeline.local_store import LocalStore


@pytest.fixture
def config() -> PipelineConfig:
    """Short scenes so encoding tests stay fast."""
    return PipelineConfig(min_scene_seconds=1.0)


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours *_proxy variables; a CI proxy must not intercept requests to the fake backend.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@dataclass
class Route:
    status: int = 200
    body: bytes = b"{}"
    delay_s: float = 0.0


@dataclass
class FakeBackend:
    """Answers POSTs per path with a canned status/body after an optional delay; records requests."""

    url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)

    def answer(self, path: str, *, status: int = 200, json_body: Any = None, body: bytes | None = None, delay_s: float = 0.0) -> None:
        raw = body if body is not None else json.dumps(json_body).encode()
        self.routes[path] = Route(status=status, body=raw, delay_s=delay_s)


@pytest.fixture
def fake_backend() -> Iterator[FakeBackend]:
    """A real ThreadingHTTPServer on 127.0.0.1 with an ephemeral port, run in a thread."""
    backend = FakeBackend()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw
            backend.requests.append((self.path, payload))
            route = backend.routes.get(self.path, Route(status=404, body=b'{"error": "not found"}'))
            time.sleep(route.delay_s)
            try:
                self.send_response(route.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    backend.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a port nothing listens on, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def local_files(folder: Path) -> StageFiles:
    """Stage files stored as plain files in `folder` (a LocalStore rooted one level up), scratch beside it."""
    return StageFiles(LocalStore(folder.parent), folder.name, folder.parent / f"{folder.name}.scratch")


def stored(folder: Path, artifact: Artifact) -> Path:
    """The file holding an artifact stored through `local_files(folder)`."""
    return folder.parent / artifact.key
