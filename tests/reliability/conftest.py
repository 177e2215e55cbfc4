"""Shared parts of the fault-injection suite: short limits, websocket watchers, and the final invariants.

Every scenario ends with `assert_settled`: each job is terminal, its JobEvents are numbered 1..N without
gaps, and every websocket client watching it saw its final status (reconnecting with `resume` where the
fault cut the connection), having received every seq from its first contact to the end.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from jobs import services, states
from jobs.models import GenerationJob, JobEvent
from devtools.embedded_redis import free_port
from tests.e2e.fake_backend import script  # noqa: F401  (re-exported to the scenarios)
from tests.factories import make_project, make_user
from tests.processes import artifacts_dir
from tests.redis_ha import RedisServer

# Worker/beat limits short enough that a lost worker is noticed within seconds.
LIMITS = {
    "JOBS_HEARTBEAT_INTERVAL_S": "1",
    "JOBS_STALE_AFTER_S": "4",
    "JOBS_REAPER_INTERVAL_S": "1",
    "JOBS_CANCEL_GRACE_S": "3",
    "JOBS_RETRY_BACKOFF_S": "0.2",
    "JOBS_RETRY_BACKOFF_MAX_S": "1",
    "JOBS_RETRY_MAX": "5",
    "JOBS_QUEUED_REDISPATCH_AFTER_S": "30",
}
TINY_IMAGES = {"width": 64, "height": 64}


@pytest.fixture
def periodic_tasks(settings):
    """The reaper every second, created the way `make run` creates it, for beat to run."""
    settings.JOBS = {**settings.JOBS, "REAPER_INTERVAL_S": 1.0, "STALE_AFTER_S": 4.0, "CANCEL_GRACE_S": 3.0}
    call_command("setup_periodic_tasks", verbosity=0)
    return settings


@pytest.fixture
def private_redis():
    """A redis-server on a port of its own that the test may stop and start again (same port, empty).

    Every process of a test that restarts Redis uses this one, never the machine's: stopping it cannot
    disturb other test runs."""
    port = free_port()
    server = RedisServer(artifacts_dir() / f"redis-private-{port}", port=port).start()
    yield server
    server.stop()


def token_for(user: Any) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def owned_jobs(texts: tuple[str, ...], count: int, job_type: str = "image_generation",
               params: dict | None = None) -> tuple[list[GenerationJob], str]:
    """`count` queued jobs of one new user (dispatched on commit), and that user's token."""
    user = make_user()
    project = make_project(owner=user, script=script(*texts))
    jobs = [services.job_create(project=project, job_type=job_type, params=params or TINY_IMAGES)
            for _ in range(count)]
    return jobs, token_for(user)


# --- websocket watchers ---------------------------------------------------------------------------------

@dataclass
class JobView:
    """What one client learnt about one job."""

    first_seq: int | None = None
    seqs: set[int] = field(default_factory=set)
    final: dict[str, Any] | None = None

    def see(self, message: dict[str, Any]) -> None:
        seq = message["seq"]
        if self.first_seq is None:
            self.first_seq = seq
        self.seqs.add(seq)
        if message.get("status") in states.TERMINAL:  # an `artifact` message has a seq but no status
            self.final = message


@dataclass
class Stream:
    """One websocket client: a job stream, or a project stream expecting `job_ids`."""

    url: str
    job_ids: list[str] | None  # None: not known yet (a project stream opened before its jobs exist)
    project: bool = False
    views: dict[str, JobView] = field(default_factory=dict)
    connects: int = 0
    errors: list[str] = field(default_factory=list)

    def done(self) -> bool:
        if self.job_ids is None:
            return False
        return all(self.views.get(j) is not None and self.views[j].final is not None for j in self.job_ids)

    def resume_frames(self) -> list[dict[str, Any]]:
        frames = []
        for job_id, view in self.views.items():
            if view.seqs and view.final is None:
                frame: dict[str, Any] = {"type": "resume", "after_seq": max(view.seqs)}
                if self.project:
                    frame["job_id"] = job_id
                frames.append(frame)
        return frames


async def _follow(stream: Stream, deadline: float, silence_resume_s: float | None) -> None:
    """Read until every expected job finished; on a broken connection reconnect and resume from the last seq.

    With `silence_resume_s`, a quiet connection also sends `resume` (what a client does when it suspects
    it missed pushes, e.g. while the server's Redis was away); without it only pushes count.
    """
    while not stream.done() and time.monotonic() < deadline:
        try:
            async with connect(stream.url, open_timeout=10, close_timeout=2, max_size=None) as socket:
                stream.connects += 1
                for frame in stream.resume_frames():
                    await socket.send(json.dumps(frame))
                while not stream.done():
                    wait = max(0.05, deadline - time.monotonic())
                    if silence_resume_s:
                        wait = min(wait, silence_resume_s)
                    try:
                        raw = await asyncio.wait_for(socket.recv(), wait)
                    except (asyncio.TimeoutError, TimeoutError):
                        if time.monotonic() >= deadline:
                            return
                        for frame in stream.resume_frames():
                            await socket.send(json.dumps(frame))
                        continue
                    message = json.loads(raw)
                    if message.get("type") not in ("status", "artifact"):  # both are numbered job events
                        stream.errors.append(str(message))
                        continue
                    stream.views.setdefault(message["job_id"], JobView()).see(message)
        except (OSError, WebSocketException, asyncio.TimeoutError, TimeoutError, InvalidStatus) as exc:
            stream.errors.append(f"connection: {exc!r}")
            await asyncio.sleep(0.5)


class Watchers:
    """Websocket clients following jobs from a background thread (its own event loop) while a test acts."""

    def __init__(self, streams: Iterable[Stream], *, timeout: float, silence_resume_s: float | None = None) -> None:
        self.streams = list(streams)
        self.deadline = time.monotonic() + timeout
        self.silence_resume_s = silence_resume_s
        self.connected = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="ws-watchers", daemon=True)

    @classmethod
    def for_jobs(cls, port: int, jobs: Iterable[GenerationJob], token: str, **kwargs: Any) -> Watchers:
        return cls([Stream(f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/?token={token}", [str(job.pk)]) for job in jobs],
                   **kwargs)

    async def _main(self) -> None:
        tasks = [asyncio.create_task(_follow(s, self.deadline, self.silence_resume_s)) for s in self.streams]
        while not all(s.connects for s in self.streams) and time.monotonic() < self.deadline:
            await asyncio.sleep(0.05)
        self.connected.set()
        await asyncio.gather(*tasks)

    def start(self, connect_timeout: float = 30.0) -> Watchers:
        self.thread.start()
        assert self.connected.wait(connect_timeout), "watchers did not connect"
        return self

    def join(self) -> None:
        self.thread.join(max(1.0, self.deadline - time.monotonic() + 5))
        assert not self.thread.is_alive(), "watchers still running past their deadline"


# --- the invariants every scenario ends with --------------------------------------------------------------

def assert_settled(job_ids: Iterable[Any], watchers: Watchers | None = None) -> dict[str, GenerationJob]:
    """Every job terminal, events 1..N without gaps, every watcher saw the final status and every seq."""
    ids = [str(j) for j in job_ids]
    jobs = {str(j.pk): j for j in GenerationJob.objects.filter(pk__in=ids)}
    assert len(jobs) == len(ids)
    for job_id, job in jobs.items():
        assert job.status in states.TERMINAL, f"job {job_id} is {job.status}"
        seqs = list(JobEvent.objects.filter(job_id=job_id).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)) and job.seq == len(seqs), f"job {job_id} events {seqs}"
    if watchers is not None:
        watchers.join()
        for stream in watchers.streams:
            for job_id in stream.job_ids or ():
                view = stream.views.get(job_id)
                assert view is not None and view.final is not None, (
                    f"{stream.url} never saw job {job_id} finish; errors: {stream.errors[-5:]}")
                job = jobs[job_id]
                assert (view.final["status"], view.final["seq"]) == (job.status, job.seq), view.final
                missing = set(range(view.first_seq, job.seq + 1)) - view.seqs
                assert not missing, f"{stream.url} missed seqs {sorted(missing)} of job {job_id}"
    return jobs
