"""Clients that watch jobs for the whole soak: websockets and Server-Sent Events, job and project streams.

They behave as real clients do: a broken websocket reconnects and sends `resume` from the last seq it has;
an SSE job stream that ends (after a terminal status, or cut) reconnects with `Last-Event-ID`, as
EventSource does. Jobs may be retried after a terminal status, so no client can tell on its own that it is
done: the test hands every client the jobs' final (status, seq) once the database says every job is over,
and each client keeps following until it has seen those (or the deadline passes).
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
from websockets.exceptions import InvalidStatus, WebSocketException

from tests.e2e.test_sse_stream import parse_events

TERMINAL = ("completed", "failed", "cancelled")
WS_JOB, WS_PROJECT, SSE_JOB, SSE_PROJECT = "ws-job", "ws-project", "sse-job", "sse-project"
# A stream the server ended is reopened after the server's `retry:` hint (realtime/sse.py RECONNECT_MS),
# except an SSE job stream that ended after the job's terminal status (Watchers._after_end); a broken one sooner.
RECONNECT_AFTER_END_S = 3.0
RECONNECT_AFTER_ERROR_S = 0.5


@dataclass
class Seen:
    """What one client learnt about one job."""

    first_seq: int | None = None
    seqs: set[int] = field(default_factory=set)
    latest: dict[str, Any] | None = None  # the status message with the highest seq

    def see(self, message: dict[str, Any]) -> None:
        seq = message["seq"]
        if self.first_seq is None:
            self.first_seq = seq
        self.seqs.add(seq)
        if message["type"] == "status" and (self.latest is None or seq >= self.latest["seq"]):
            self.latest = message


@dataclass
class Client:
    """One watching client; `job_ids` grows as the user creates jobs in a watched project."""

    kind: str
    url: str
    token: str
    job_ids: set[str] = field(default_factory=set)
    seen: dict[str, Seen] = field(default_factory=dict)
    connects: int = 0
    errors: list[str] = field(default_factory=list)
    reopen: bool = False  # set when the job is retried after this (SSE job) client saw it end

    def record(self, message: dict[str, Any]) -> None:
        # Artifact messages are numbered among the job's events too (CONTRACT.md): both count for gaps.
        if message.get("type") in ("status", "artifact") and isinstance(message.get("seq"), int):
            self.seen.setdefault(message["job_id"], Seen()).see(message)
        elif message.get("type") == "error":
            self.errors.append(f"server error message: {message}")

    def last_seq(self, job_id: str) -> int:
        seen = self.seen.get(job_id)
        return max(seen.seqs) if seen and seen.seqs else 0

    def unfinished(self) -> int:
        """How many of its jobs this client last saw queued or processing (or has not heard of yet)."""
        return sum((seen := self.seen.get(job_id)) is None or seen.latest is None
                   or seen.latest["status"] not in TERMINAL for job_id in list(self.job_ids))

    def finished(self) -> bool:
        """The latest status this client saw of each of its jobs is terminal."""
        return all((seen := self.seen.get(job_id)) is not None and seen.latest is not None
                   and seen.latest["status"] in TERMINAL for job_id in list(self.job_ids))

    def done(self, expected: dict[str, tuple[str, int]] | None) -> bool:
        if expected is None:
            return False
        return all(self.last_seq(job_id) >= expected[job_id][1] for job_id in list(self.job_ids))


class Watchers:
    """Runs every client on one event loop in a background thread while the soak goes on."""

    def __init__(self, port: int, *, deadline_s: float) -> None:
        self.port = port
        self.clients: list[Client] = []
        self.expected: dict[str, tuple[str, int]] | None = None
        self.deadline = time.monotonic() + deadline_s
        self.loop = asyncio.new_event_loop()
        self.tasks: list[asyncio.Future] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="soak-watchers", daemon=True)
        self.thread.start()

    def watch(self, kind: str, target_id: str, token: str, job_ids: set[str] | None = None) -> Client:
        """Open a client of `kind` on a job (its id) or a project (its id, with the jobs it should report)."""
        base = f"127.0.0.1:{self.port}"
        url = {WS_JOB: f"ws://{base}/ws/jobs/{target_id}/?token={token}",
               WS_PROJECT: f"ws://{base}/ws/projects/{target_id}/?token={token}",
               SSE_JOB: f"http://{base}/api/jobs/{target_id}/stream/",
               SSE_PROJECT: f"http://{base}/api/projects/{target_id}/stream/"}[kind]
        client = Client(kind, url, token, job_ids if job_ids is not None else {target_id})
        self.clients.append(client)
        follow = _follow_ws if kind in (WS_JOB, WS_PROJECT) else _follow_sse
        self.tasks.append(asyncio.run_coroutine_threadsafe(self._run(client, follow), self.loop))
        return client

    def finish(self, expected: dict[str, tuple[str, int]], timeout: float) -> None:
        """Tell every client the final (status, seq) of each job and wait until they have caught up."""
        self.expected = expected
        self.deadline = min(self.deadline, time.monotonic() + timeout)
        for task in self.tasks:
            try:
                task.result(max(0.5, self.deadline - time.monotonic() + 5))
            except Exception as exc:  # noqa: BLE001 - reported by the assertions on the client
                self.clients[self.tasks.index(task)].errors.append(f"follower crashed: {exc!r}")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _run(self, client: Client, follow) -> None:
        """Follow until done; the reading task is cancelled from here, so a quiet stream ends on time too."""
        while not client.done(self.expected) and time.monotonic() < self.deadline:
            reader = asyncio.ensure_future(follow(client))
            while not reader.done():
                if client.done(self.expected) or time.monotonic() >= self.deadline:
                    reader.cancel()
                    break
                await asyncio.sleep(0.25)
            try:
                await reader
            except asyncio.CancelledError:
                return
            except (OSError, WebSocketException, InvalidStatus, httpx.HTTPError, asyncio.TimeoutError,
                    TimeoutError) as exc:
                client.errors.append(f"connection: {exc!r}")
                await asyncio.sleep(RECONNECT_AFTER_ERROR_S)
                continue
            await self._after_end(client)

    async def _after_end(self, client: Client) -> None:
        """The server ended the stream. After a job's terminal status a client has what it came for and stays
        away until its user retries the job (`reopen`) or the test asks for a final status it has not seen;
        otherwise it reconnects after the server's `retry:` hint, as EventSource does."""
        if client.kind == SSE_JOB and client.finished():
            while time.monotonic() < self.deadline:
                if client.reopen:
                    client.reopen = False
                    return
                if self.expected is not None:  # `_run` reconnects if the final status is still missing
                    break
                await asyncio.sleep(0.25)
        await asyncio.sleep(RECONNECT_AFTER_END_S)

    def reopen(self, job_id: str) -> None:
        """The job's user retried it: its SSE job clients that saw it end open their stream again."""
        for client in self.clients:
            if client.kind == SSE_JOB and job_id in client.job_ids:
                client.reopen = True


async def _follow_ws(client: Client) -> None:
    """One websocket connection: resume every job already seen from its last seq, then read."""
    async with connect(client.url, open_timeout=10, close_timeout=2, max_size=None) as socket:
        client.connects += 1
        for job_id in list(client.seen):
            frame: dict[str, Any] = {"type": "resume", "after_seq": client.last_seq(job_id)}
            if client.kind == WS_PROJECT:
                frame["job_id"] = job_id
            await socket.send(json.dumps(frame))
        async for raw in socket:
            client.record(json.loads(raw))


async def _follow_sse(client: Client) -> None:
    """One SSE request: a job stream asks for what follows its last seq; it ends when the server ends it."""
    headers = {"Authorization": f"Token {client.token}", "Accept": "text/event-stream"}
    if client.kind == SSE_JOB and client.seen:
        headers["Last-Event-ID"] = str(client.last_seq(next(iter(client.job_ids))))
    # The server sends a comment at least every SSE_KEEPALIVE_S: a longer silence is a dead stream.
    timeout = httpx.Timeout(10.0, read=20.0)
    async with httpx.AsyncClient(timeout=timeout) as http:
        async with http.stream("GET", client.url, headers=headers) as response:
            if response.status_code != 200:
                client.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            client.connects += 1
            lines: list[str] = []
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                for event in parse_events([*lines, ""]):
                    if event.get("event") in ("status", "artifact"):
                        client.record(event["data"])
                lines = []
