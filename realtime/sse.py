"""Server-Sent Events: the websocket's status messages as a `text/event-stream` (CONTRACT.md "stream" rows).

The stream is an async generator that Django's ASGI handler drives on the event loop, so an open stream
holds no thread and no database connection: it waits on its channel-layer subscription and touches the
database only in short `database_sync_to_async` reads (the snapshot, a replay, a gap fill). The views in
realtime/sse_views.py authorise the request first and hand the generator to a StreamingHttpResponse.

Ordering, as in realtime/consumers.py: subscribe first, then send the snapshot or replay, then drop every
live message whose seq the client already has; a live message that skips seqs is preceded by the missing
events read from JobEvent. So each seq is sent exactly once, in order, with no gap at the replay's seam.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from jobs import selectors as job_selectors
from jobs import states
from jobs.models import GenerationJob

from . import events, layer_down
from .history import REPLAY_BATCH, latest_seqs, replay_page
from .sse_access import reauth_s

PROJECT_SNAPSHOT_LIMIT = 100  # as the project websocket: the newest jobs' snapshots on connect
# A pub/sub subscription takes effect a moment after group_add returns (realtime/consumers.py): one
# re-read this long after the start catches an event committed in that instant.
CATCH_UP_AFTER_S = 1.0
# Live messages waiting for a slow reader; past this they are dropped and re-read from JobEvent instead,
# so a stalled client costs a bounded amount of memory.
INBOX_LIMIT = 1000
RECONNECT_MS = 3000  # the `retry:` hint: how long EventSource waits before reconnecting


Allowed = Callable[[], Awaitable[bool]]


async def _always() -> bool:
    return True


def keepalive_s() -> float:
    """Seconds of silence after which a comment line is sent (CONTRACT.md: at least every 15 s)."""
    return float(getattr(settings, "SSE_KEEPALIVE_S", 15.0))


# --- the wire format ---------------------------------------------------------------------------------

def frame(message: dict[str, Any], text: str | None = None) -> bytes:
    """One SSE event: `id:` the seq (status and artifact messages), `event:` the message type, `data:` the JSON."""
    lines = []
    if isinstance(message.get("seq"), int):
        lines.append(f"id: {message['seq']}")
    lines.append(f"event: {message.get('type') or 'message'}")
    lines.append(f"data: {text if text is not None else events.encode(message)}")  # JSON has no newline
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode("utf-8")


# --- database reads (each a short hop; no connection is kept between them) ---------------------------

@database_sync_to_async
def _job_snapshot(job_id: str) -> dict[str, Any] | None:
    job = GenerationJob.objects.filter(pk=job_id).first()
    return events.snapshot_message(job) if job is not None else None


@database_sync_to_async
def _project_snapshots(project_id: str) -> list[dict[str, Any]]:
    jobs = job_selectors.jobs_for_project(project_id=project_id)[:PROJECT_SNAPSHOT_LIMIT]
    return [events.snapshot_message(job) for job in jobs]


async def replay(job_id: str, after_seq: int, before_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """The job's recorded events after `after_seq` (and before `before_seq`) as status or artifact messages."""
    while True:
        batch = await replay_page(job_id, after_seq, before_seq) or []
        for message in batch:
            after_seq = message["seq"]
            yield message
        if len(batch) < REPLAY_BATCH:
            return


# --- the subscription ----------------------------------------------------------------------------------

class Subscription:
    """A channel-layer channel joined to some groups, read by one long-lived task into a bounded inbox.

    channels-redis's pub/sub `receive` unsubscribes the channel when it is cancelled, so a timed wait on
    it would end the subscription; the pump task keeps one `receive` pending and the stream waits on the
    inbox instead. An overflowing inbox is emptied and flagged: the stream re-reads from JobEvent.
    """

    def __init__(self, groups: list[str]) -> None:
        self.groups = groups
        self.layer: Any = None
        self.channel = ""
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(INBOX_LIMIT)
        self.overflowed = False
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscription:
        if self._pump is None:
            await self.open()
        return self

    async def open(self) -> None:
        """Subscribe (raises what the channel layer raises when its Redis is unavailable)."""
        self.layer = get_channel_layer()
        self.channel = await self.layer.new_channel()
        # The pump first: if a group_add fails, cancelling its receive gives the channel back to the layer.
        self._pump = asyncio.ensure_future(self._run_pump())
        try:
            for group in self.groups:
                await self.layer.group_add(group, self.channel)
        except BaseException:
            await self.__aexit__()
            raise

    async def __aexit__(self, *exc: object) -> None:
        if self._pump is not None:
            self._pump.cancel()  # the pending receive's cancellation unsubscribes the channel
            try:
                await self._pump
            except BaseException:  # noqa: BLE001 - cancelled or already failed; nothing to hand on
                pass
        for group in self.groups:
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception:  # noqa: BLE001 - Redis gone: the subscription dies with the connection
                pass

    async def _run_pump(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            try:
                self.inbox.put_nowait(message)
            except asyncio.QueueFull:
                self.overflowed = True
                while not self.inbox.empty():
                    self.inbox.get_nowait()

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next group message, or None after `timeout` seconds (or once the inbox overflowed)."""
        if self.overflowed:
            return None
        if not self.inbox.empty():
            return self.inbox.get_nowait()
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except asyncio.TimeoutError:
            return None


# --- the streams --------------------------------------------------------------------------------------

class _Cursor:
    """What the client has been sent per job, and whether the stream is over."""

    def __init__(self, end_on_terminal: bool) -> None:
        self.last_seq: dict[str, int] = {}
        self.end_on_terminal = end_on_terminal
        self.finished = False

    def accept(self, message: dict[str, Any]) -> bool:
        """Record a status or artifact message about to be sent; False when the client already has its seq."""
        job_id, seq = message.get("job_id"), message.get("seq")
        if not isinstance(job_id, str) or not isinstance(seq, int):
            return False
        if seq <= self.last_seq.get(job_id, -1):
            return False
        self.last_seq[job_id] = seq
        # A retried job leaves its terminal status again, so only the latest message decides.
        self.finished = self.end_on_terminal and states.is_terminal(message.get("status", ""))
        return True


async def _catch_up(cursor: _Cursor, job_ids: list[str]) -> AsyncIterator[bytes]:
    """Frames of whatever was recorded after what the client has (after a resync, overflow or start)."""
    for job_id, seq in (await latest_seqs(job_ids)).items():
        last = cursor.last_seq.get(job_id, 0)
        if seq > last:
            async for message in replay(job_id, last):
                if cursor.accept(message):
                    yield frame(message)


async def _catch_up_project(cursor: _Cursor, project_id: str) -> AsyncIterator[bytes]:
    """_catch_up for a project: also a snapshot of each job created while the stream was deaf."""
    for snapshot in await _project_snapshots(project_id):
        if snapshot["job_id"] not in cursor.last_seq and cursor.accept(snapshot):
            yield frame(snapshot)
    async for chunk in _catch_up(cursor, list(cursor.last_seq)):
        yield chunk


async def _live(cursor: _Cursor, message: dict[str, Any], text: Any) -> AsyncIterator[bytes]:
    """Frames for one live message: the gap before it (if any), then the message itself."""
    # `status` and `artifact` messages are both numbered job events: one seq order for both.
    if message.get("type") not in ("status", events.ARTIFACT):
        yield frame(message, text if isinstance(text, str) else None)
        return
    job_id, seq = message.get("job_id"), message.get("seq")
    if not isinstance(job_id, str) or not isinstance(seq, int):
        return
    last = cursor.last_seq.get(job_id)
    if last is not None and seq > last + 1:
        async for missed in replay(job_id, last, before_seq=seq):
            if cursor.accept(missed):
                yield frame(missed)
    if cursor.accept(message):
        yield frame(message, text if isinstance(text, str) else None)


async def _follow(sub: Subscription, cursor: _Cursor, catch_up: Callable[[], AsyncIterator[bytes]],
                  allowed: Allowed) -> AsyncIterator[bytes]:
    """Live frames until the cursor finishes or access is revoked; a comment after each keep-alive interval."""
    catch_up_at: float | None = time.monotonic() + CATCH_UP_AFTER_S
    check_at = time.monotonic() + reauth_s()
    while not cursor.finished:
        now = time.monotonic()
        if now >= check_at:
            if not await allowed():
                yield comment("access revoked")
                return
            check_at = now + reauth_s()
        wait = keepalive_s() if catch_up_at is None else max(0.0, catch_up_at - now)
        wait = min(wait, max(0.0, check_at - now))  # an idle stream is re-checked on time too
        event = await sub.next(wait)
        if event is None:
            if sub.overflowed or catch_up_at is not None:
                sub.overflowed, catch_up_at = False, None
                async for chunk in catch_up():
                    yield chunk
            else:
                # A push can be lost for good (its worker SIGKILLed between the commit and the publish:
                # tests/reliability/test_soak.py): a quiet stream re-reads its jobs' seqs, as the
                # websocket's quiet check does, so an open stream still gets the final status.
                async for chunk in catch_up():
                    yield chunk
                yield comment("keep-alive")
            continue
        kind = event.get("type")
        if kind == events.JOB_STATUS_EVENT:
            async for chunk in _live(cursor, event.get("payload") or {}, event.get("text")):
                yield chunk
        elif kind == "layer.resync":  # patches.channels_redis_pubsub: Redis came back, pushes may be lost
            async for chunk in catch_up():
                yield chunk


async def _unavailable(sub: Subscription) -> bytes | None:
    """Open the subscription; an `error` event to end the stream with when the channel layer is unavailable
    (realtime/layer_down.py: the view refused with 503 when it could tell before the headers went out)."""
    try:
        await sub.open()
        return None
    except layer_down.LAYER_ERRORS as exc:
        layer_down.log_refused("SSE stream", exc)
        return frame(events.error_message(layer_down.REASON))


async def job_stream(*, job_id: str, after_seq: int | None, allowed: Allowed = _always) -> AsyncIterator[bytes]:
    """One job: the snapshot (or every event after `after_seq`), then live, ending after a terminal status."""
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    cursor = _Cursor(end_on_terminal=True)
    sub = Subscription([events.job_group_name(job_id)])
    if (refused := await _unavailable(sub)) is not None:
        yield refused
        return
    async with sub:
        snapshot = await _job_snapshot(job_id)
        if snapshot is None:  # deleted meanwhile
            return
        if after_seq is None:
            if cursor.accept(snapshot):
                yield frame(snapshot)
        else:
            cursor.last_seq[job_id] = after_seq
            async for message in replay(job_id, after_seq):
                if cursor.accept(message):
                    yield frame(message)
            # Nothing left to replay and the job is over: the client has everything.
            if states.is_terminal(snapshot["status"]) and cursor.last_seq[job_id] >= snapshot["seq"]:
                cursor.finished = True
        async for chunk in _follow(sub, cursor, lambda: _catch_up(cursor, [job_id]), allowed):
            yield chunk


async def project_stream(*, project_id: str, allowed: Allowed = _always) -> AsyncIterator[bytes]:
    """Every job of a project: one snapshot per job (newest first), then live; open until the client leaves."""
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    cursor = _Cursor(end_on_terminal=False)
    sub = Subscription([events.project_group_name(project_id)])
    if (refused := await _unavailable(sub)) is not None:
        yield refused
        return
    async with sub:
        for snapshot in await _project_snapshots(project_id):
            if cursor.accept(snapshot):
                yield frame(snapshot)
        async for chunk in _follow(sub, cursor, lambda: _catch_up_project(cursor, project_id), allowed):
            yield chunk
