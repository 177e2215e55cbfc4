"""Clients that watch jobs over a websocket or Server-Sent Events and note when each push arrived.

Used where the time between pushes is the point (a Redis failover: tests/reliability/test_redis_sentinel.py,
bench/failover.py). Each client follows one job until its terminal status, reconnecting and resuming from
its last seq (websocket `resume`, SSE `Last-Event-ID`) if the connection breaks.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from jobs import states


@dataclass
class Watch:
    """What one client received: (monotonic arrival time, status or artifact message) in order."""

    kind: str  # "ws" or "sse"
    job_id: str
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    connects: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any] | None:
        return next((m for _, m in reversed(self.arrivals) if m.get("status") in states.TERMINAL), None)

    @property
    def last_seq(self) -> int:
        return max((m["seq"] for _, m in self.arrivals), default=0)

    def seqs(self) -> set[int]:
        return {m["seq"] for _, m in self.arrivals}

    def first_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first message that arrived after it."""
        return next((at - moment for at, _ in self.arrivals if at > moment), None)

    def longest_silence(self, start: float, end: float | None = None) -> float:
        """The longest time without a message from `start` until the final status (or `end`)."""
        times = [start] + [at for at, _ in self.arrivals if at > start]
        if end is not None:
            times = [t for t in times if t <= end] + [end]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


async def _follow_ws(watch: Watch, base: str, token: str, deadline: float) -> None:
    url = f"ws://{base}/ws/jobs/{watch.job_id}/?token={token}"
    while watch.final is None and time.monotonic() < deadline:
        try:
            async with connect(url, open_timeout=10, close_timeout=2, max_size=None) as socket:
                watch.connects += 1
                if watch.arrivals:
                    await socket.send(json.dumps({"type": "resume", "after_seq": watch.last_seq}))
                while watch.final is None:
                    raw = await asyncio.wait_for(socket.recv(), max(0.05, deadline - time.monotonic()))
                    message = json.loads(raw)
                    if message.get("type") in ("status", "artifact"):  # both are numbered job events
                        watch.arrivals.append((time.monotonic(), message))
        except (OSError, WebSocketException, asyncio.TimeoutError, TimeoutError) as exc:
            watch.errors.append(repr(exc))
            await asyncio.sleep(0.5)


async def _follow_sse(watch: Watch, base: str, token: str, deadline: float) -> None:
    url = f"http://{base}/api/jobs/{watch.job_id}/stream/"
    while watch.final is None and time.monotonic() < deadline:
        headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
        if watch.arrivals:
            headers["Last-Event-ID"] = str(watch.last_seq)
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(max(1.0, deadline - time.monotonic()))) as client:
                async with client.stream("GET", url, headers=headers) as response:
                    watch.connects += 1
                    event = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            event = line.partition(":")[2].strip()
                        elif line.startswith("data:") and event in ("status", "artifact"):
                            watch.arrivals.append((time.monotonic(), json.loads(line.partition(":")[2])))
                        if watch.final is not None or time.monotonic() > deadline:
                            return
        except (httpx.HTTPError, OSError) as exc:
            watch.errors.append(repr(exc))
            await asyncio.sleep(0.5)


class PushClients:
    """Websocket and SSE clients following jobs from a background thread (its own event loop)."""

    def __init__(self, port: int, token: str, job_ids: list[str], *, kinds: tuple[str, ...] = ("ws", "sse"),
                 timeout: float = 120.0) -> None:
        self.base, self.token = f"127.0.0.1:{port}", token
        self.watches = [Watch(kind, job_id) for job_id in job_ids for kind in kinds]
        self.deadline = time.monotonic() + timeout
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="push-clients", daemon=True)

    async def _main(self) -> None:
        follow = {"ws": _follow_ws, "sse": _follow_sse}
        await asyncio.gather(*(follow[w.kind](w, self.base, self.token, self.deadline) for w in self.watches))

    def start(self, connect_timeout: float = 30.0) -> PushClients:
        self.thread.start()
        limit = time.monotonic() + connect_timeout
        while not all(w.arrivals for w in self.watches):  # each has its snapshot: it is subscribed
            assert time.monotonic() < limit, "push clients did not connect"
            time.sleep(0.05)
        return self

    def join(self) -> None:
        self.thread.join(max(1.0, self.deadline - time.monotonic() + 5))
        assert not self.thread.is_alive(), "push clients still running past their deadline"
