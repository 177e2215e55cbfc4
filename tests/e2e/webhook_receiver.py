"""A real HTTP server on a free loopback port that records webhook deliveries and answers as told.

`answers` is a list of status codes used one per request (then 200); `hang` makes it accept requests and
never answer; `stop()` / `start()` take it down and bring it back on the same port.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.processes import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the body was read (bench/webhooks.py measures delivery latency with it)


class WebhookReceiver:
    def __init__(self, *, answers: list[int] | None = None, hang: bool = False) -> None:
        self.port = free_port()
        self.answers = list(answers or [])
        self.hang = hang
        self.received: list[Received] = []
        self.hung = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/in?src=test"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                if receiver.hang:
                    with receiver.lock:
                        receiver.hung += 1
                    receiver._release.wait(120)
                    return
                with receiver.lock:
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, at))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        return Handler

    def start(self) -> "WebhookReceiver":
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._release = threading.Event()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)
