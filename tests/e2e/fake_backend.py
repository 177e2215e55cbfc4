"""A Stable Diffusion-compatible HTTP server for worker tests, whose behaviour each prompt chooses.

The pipeline sends every scene's text as the prompt, so a test script picks the failure it wants:
`[slow:S]` answers after S seconds, `[flaky:N]` answers 503 N times then succeeds, `[down]` always 503,
`[perm]` 400, `[hang]` sleeps far longer than any test. Real HTTP, real pipeline error mapping.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def prompt_color(prompt: str) -> tuple[int, int, int]:
    """The flat colour of the image answered for `prompt`: each scene's picture can be told apart."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def _png(width: int, height: int, prompt: str = "") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), prompt_color(prompt)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class FakeBackend:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.intervals: list[tuple[float, float, str]] = []  # (start, end, prompt) of each answered request
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                status, body = backend.answer(payload)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client (a terminated worker) went away
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeBackend:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, marker: str) -> int:
        """Requests whose prompt contained `marker`."""
        with self.lock:
            return sum(n for prompt, n in self.requests.items() if marker in prompt)

    def peak_in_flight(self, marker: str) -> int:
        """The most requests whose prompt contains `marker` that were being answered at one moment."""
        with self.lock:
            spans = [(start, end) for start, end, prompt in self.intervals if marker in prompt]
        edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        peak = current = 0
        for _, step in edges:  # at equal times an end (-1) sorts before a start: touching is not overlapping
            current += step
            peak = max(peak, current)
        return peak

    def answer(self, payload: dict) -> tuple[int, dict]:
        started = time.monotonic()
        try:
            return self._answer(payload)
        finally:
            with self.lock:
                self.intervals.append((started, time.monotonic(), str(payload.get("prompt", ""))))

    def _answer(self, payload: dict) -> tuple[int, dict]:
        prompt = str(payload.get("prompt", ""))
        with self.lock:
            self.requests[prompt] += 1
            seen = self.requests[prompt]
        if match := re.search(r"\[slow:([\d.]+)\]", prompt):
            time.sleep(float(match.group(1)))
        if "[hang]" in prompt:
            time.sleep(120)
        if "[perm]" in prompt:
            return 400, {"error": "bad prompt"}
        if "[down]" in prompt:
            return 503, {"error": "overloaded"}
        if (match := re.search(r"\[flaky:(\d+)\]", prompt)) and seen <= int(match.group(1)):
            return 503, {"error": "warming up"}
        return 200, {"images": [_png(int(payload.get("width", 64)), int(payload.get("height", 64)), prompt)]}


def script(*texts: str) -> str:
    """A script with one `# Scene N` per text (each text may carry the backend's markers)."""
    return "\n\n".join(f"# Scene {n}\n{text}" for n, text in enumerate(texts, start=1)) + "\n"
