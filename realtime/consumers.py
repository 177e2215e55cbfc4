"""Websocket consumers for `/ws/jobs/<id>/` and `/ws/projects/<id>/` (CONTRACT.md "WebSockets").

Thin: authorisation and reads go through the selectors in small database_sync_to_async helpers, and the
consumers never write. Ordering: channels hands a consumer one message at a time, so while a `resume`
replay (or a gap fill) reads the database, live group messages wait in the channel layer; afterwards each
live message whose seq the client already has is dropped. A live message that skips seqs (the channel layer
dropped one, or two processes published one job's events out of order) is preceded by the missing events
from JobEvent, so a client sees every seq exactly once, in order.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from jobs import selectors as job_selectors
from jobs.exceptions import JobNotFound, ProjectNotFound
from jobs.ids import parse_uuid
from ops import metrics
from patches.channels_consumer import InboxDispatchMixin

from . import events, layer_down
from .guards import SocketGuards
from .history import REPLAY_BATCH, latest_seqs, replay_page
from .limits import COST_CHEAP, COST_DATABASE

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
SEQ_MAX = 2**31 - 1  # JobEvent.seq is a PositiveIntegerField
PROJECT_SNAPSHOT_LIMIT = 100  # the newest jobs of a project sent on connect (as the REST page size)

# A pub/sub subscription takes effect a moment after group_add returns; an event committed in that
# instant reaches neither the snapshot nor the live stream. One re-read this long after connect closes it.
CATCH_UP_AFTER_S = 1.0

HELP = 'send "ping", "refresh", or JSON {"type": "ping"|"refresh"|"resume", "after_seq": N}'


# --- database helpers (the only ORM access) ------------------------------------------------------------

def _canonical_uuid(value: Any) -> str | None:
    """The id as publish.py names groups (lowercase, hyphenated), or None when it is not a UUID."""
    parsed = parse_uuid(value)
    return str(parsed) if parsed is not None else None


@database_sync_to_async
def _job_snapshot_for_user(job_id: str, user: Any) -> list[dict[str, Any]] | None:
    """The job's snapshot if it is the user's, else None (one query: ownership and state together)."""
    try:
        return [events.snapshot_message(job_selectors.job_get_for_user(job_id=job_id, user=user))]
    except JobNotFound:
        return None


@database_sync_to_async
def _project_snapshots_for_user(project_id: str, user: Any) -> list[dict[str, Any]] | None:
    """One snapshot per job of the project (newest first, capped) if it is the user's, else None."""
    from projects.selectors import project_get_for_user

    try:
        project_get_for_user(project_id=project_id, user=user)
    except ProjectNotFound:
        return None
    jobs = job_selectors.jobs_for_project(project_id=project_id)[:PROJECT_SNAPSHOT_LIMIT]
    return [events.snapshot_message(job) for job in jobs]


@database_sync_to_async
def _project_job(project_id: str, job_id: Any) -> str | None:
    if parse_uuid(job_id) is None:
        return None
    found = job_selectors.jobs_for_project(project_id=project_id).filter(pk=job_id).values_list("pk", flat=True).first()
    return str(found) if found else None


# --- consumers -----------------------------------------------------------------------------------------

class JobStatusConsumer(SocketGuards, InboxDispatchMixin, AsyncJsonWebsocketConsumer):
    """Shared protocol: auth and ownership, snapshot, ping/refresh/resume, in-order de-duplicated pushes;
    the limits each socket lives under are in realtime/guards.py."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups = []  # joined after the ownership check; channels leaves them on disconnect
        self.last_seq: dict[str, int] = {}  # per job: the highest seq this client was sent
        self.authorized = False  # set once the user is known to own the stream's job or project
        self.user: Any = None
        self.connecting = False  # set once websocket.connect reached connect()
        self.init_guards()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The consumer subscribes its own channel before any handler runs: with the channel layer's Redis
        # down that raised, and daphne answered the handshake with a bare HTTP 500.
        try:
            await super().__call__(scope, receive, send)
        except layer_down.LAYER_ERRORS as exc:
            if self.connecting:
                raise  # a failure later on (e.g. leaving the groups): daphne closes the socket (1011)
            await layer_down.refuse_websocket(receive, send, exc)

    # hooks for the two streams
    def target_groups(self) -> list[str] | None:
        """Group names for the URL's id, or None when the id cannot exist (not a UUID)."""
        raise NotImplementedError

    async def load_snapshots(self, user: Any) -> list[dict[str, Any]] | None:
        """Snapshots of the stream's job(s), or None when the target is unknown or not the user's."""
        raise NotImplementedError

    async def resume_job_id(self, content: dict[str, Any]) -> str | None:
        """The job a `resume` is about (sends an error and returns None when it cannot tell)."""
        raise NotImplementedError

    # connection
    async def connect(self) -> None:
        self.connecting = True
        # Accept first: a close before accepting reaches the client as a bare HTTP 403, not our code.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        groups = self.target_groups()
        if groups is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # Join before reading the snapshot, so an event committed in between arrives live (and is
        # de-duplicated by seq) instead of being lost; job_status ignores pushes until authorised.
        # channels leaves self.groups on disconnect, including after a 4404.
        self.groups = groups
        try:
            for group in groups:
                await self.channel_layer.group_add(group, self.channel_name)
        except layer_down.LAYER_ERRORS as exc:  # its Redis went since our channel subscribed
            layer_down.log_refused("websocket", exc)
            self.closing = True
            await self.close(code=layer_down.CLOSE_TRY_AGAIN_LATER, reason=layer_down.REASON)
            return
        snapshots = await self.load_snapshots(user)
        if snapshots is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user = user
        self.authorized = True
        metrics.ws_connections_inc()
        if not await self.admit_socket(user):
            return
        await self.send_snapshots(snapshots)
        unfinished = [m["job_id"] for m in snapshots if m["status"] in ("queued", "processing")]
        if unfinished:
            self._catch_up = asyncio.get_running_loop().call_later(
                CATCH_UP_AFTER_S, lambda: asyncio.ensure_future(self._request_catch_up(unfinished)))

    async def _request_catch_up(self, job_ids: list[str]) -> None:
        # Through our own channel, so the check runs in turn with live messages, never beside them.
        try:
            await self.channel_layer.send(self.channel_name, {"type": "job.catchup", "job_ids": job_ids})
        except Exception:  # the connection may be gone; a missed catch-up only delays to the next event
            pass

    async def job_catchup(self, event: dict[str, Any]) -> None:
        """Replay whatever was committed while the subscription was being set up."""
        job_ids = [j for j in event.get("job_ids") or [] if isinstance(j, str)]
        for job_id, seq in (await latest_seqs(job_ids)).items():
            last = self.last_seq.get(job_id, 0)
            if seq > last:
                sent = await self.replay(job_id, last)
                if sent is not None:
                    self.last_seq[job_id] = max(last, sent)

    async def disconnect(self, code: int) -> None:
        timer = getattr(self, "_catch_up", None)
        if timer is not None:
            timer.cancel()
        self.release_socket()
        if self.authorized:
            metrics.ws_connections_dec()
        await super().disconnect(code)

    async def send_snapshots(self, snapshots: list[dict[str, Any]] | None = None) -> None:
        if snapshots is None:
            snapshots = await self.load_snapshots(self.user) or []
        for message in snapshots:
            await self.send_json(message)
            self.last_seq[message["job_id"]] = max(self.last_seq.get(message["job_id"], 0), message["seq"])
            self.heard(message)

    # client messages
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if not self.authorized or self.closing:  # closing: a 4401/4404/4429 connection gets no answers
            return
        if not await self.admit_message(COST_CHEAP):
            return
        if text_data is None:
            await self.send_error("binary frames are not supported; " + HELP)
            return
        if len(text_data.encode("utf-8", "surrogatepass")) > events.MAX_CLIENT_FRAME_BYTES:
            await self.send_error(f"message too large (limit {events.MAX_CLIENT_FRAME_BYTES} bytes)")
            return
        word = text_data.strip()
        if word == "ping":
            await self.send(text_data="pong")
            return
        if word == "refresh":
            if await self.admit_message(COST_DATABASE):
                await self.send_snapshots()
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed message: not JSON; " + HELP)
            return
        if not isinstance(content, dict):
            await self.send_error("malformed message: expected a JSON object; " + HELP)
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        kind = content.get("type")
        if kind == "ping":
            await self.send_json(events.pong_message())
        elif kind in ("refresh", "resume"):
            if not await self.admit_message(COST_DATABASE):
                return
            if kind == "refresh":
                await self.send_snapshots()
            else:
                await self.handle_resume(content)
        elif isinstance(kind, str):
            await self.send_error(f"unknown message type {kind[:40]!r}; " + HELP)
        else:
            await self.send_error('malformed message: "type" must be a string; ' + HELP)

    async def handle_resume(self, content: dict[str, Any]) -> None:
        after_seq = content.get("after_seq")
        # bool is an int subclass; "true" is not a seq.
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or not 0 <= after_seq <= SEQ_MAX:
            await self.send_error('resume needs "after_seq": an integer >= 0')
            return
        job_id = await self.resume_job_id(content)
        if job_id is None:
            return
        last = await self.replay(job_id, after_seq)
        if last is not None:
            self.last_seq[job_id] = max(self.last_seq.get(job_id, 0), last)

    async def replay(self, job_id: str, after_seq: int, before_seq: int | None = None) -> int | None:
        """Send the job's recorded events after `after_seq` (before `before_seq`) a page at a time, each send
        waiting while the reader lags (patches/daphne_websocket.py); the last seq sent. A job that is no
        longer the user's closes the socket (4404)."""
        last: int | None = None
        while not self.closing:
            batch = await replay_page(job_id, after_seq, before_seq, owner=self.user)
            if batch is None:
                await self.close_for(CLOSE_NOT_FOUND, f"job {job_id} is no longer user {self.user.pk}'s")
                return last
            for message in batch:
                await self.send_json(message)
                last = after_seq = message["seq"]
            if batch:
                self.heard(batch[-1])
            if len(batch) < REPLAY_BATCH:
                return last
        return last

    # channel-layer events
    async def job_status(self, event: dict[str, Any]) -> None:
        """A live `job.status` push: drop what the client has, fill a gap from the database, send."""
        if not self.authorized or self.closing:
            return
        message = event.get("payload") or {}
        if message.get("type") == events.QUEUE_MESSAGE:  # a place in line: no seq, nothing to de-duplicate
            text = event.get("text")
            await self.send(text_data=text if isinstance(text, str) else events.encode(message))
            return
        job_id, seq = message.get("job_id"), message.get("seq")
        if not isinstance(job_id, str) or not isinstance(seq, int):
            return
        last = self.last_seq.get(job_id)
        if last is not None:
            if seq <= last:
                return
            if seq > last + 1:
                await self.replay(job_id, last, before_seq=seq)
        text = event.get("text")  # encoded once by the publisher (events.group_event)
        if isinstance(text, str):
            await self.send(text_data=text)
        else:  # from a publisher of the previous release, during a rolling deploy
            await self.send_json(message)
        self.last_seq[job_id] = seq
        self.heard(message)

    async def layer_resync(self, event: dict[str, Any]) -> None:
        """The channel layer was disconnected (patches/channels_redis_pubsub.py): send what was recorded meanwhile."""
        if not self.authorized:
            return
        for message in await self.load_snapshots(self.user) or []:
            job_id = message["job_id"]
            last = self.last_seq.get(job_id)
            if last is None:  # a project's job created while we were deaf
                await self.send_json(message)
                self.last_seq[job_id] = message["seq"]
            elif message["seq"] > last:
                sent = await self.replay(job_id, last)
                if sent is not None:
                    self.last_seq[job_id] = max(last, sent)

    async def send_error(self, text: str) -> None:
        await self.send_json(events.error_message(text))


class JobConsumer(JobStatusConsumer):
    """`/ws/jobs/<job_id>/`: one job's status messages."""

    job_id: str

    def target_groups(self) -> list[str] | None:
        job_id = _canonical_uuid(self.scope["url_route"]["kwargs"].get("job_id"))
        if job_id is None:
            return None
        self.job_id = job_id
        return [events.job_group_name(job_id)]

    async def load_snapshots(self, user: Any) -> list[dict[str, Any]] | None:
        return await _job_snapshot_for_user(self.job_id, user)

    async def resume_job_id(self, content: dict[str, Any]) -> str | None:
        given = content.get("job_id")
        if given is not None and _canonical_uuid(given) != self.job_id:
            await self.send_error("job_id does not match this stream's job")
            return None
        return self.job_id


class ProjectConsumer(JobStatusConsumer):
    """`/ws/projects/<project_id>/`: the status messages of every job of one project.

    On connect (and on refresh) it sends one snapshot per job, newest first, for the project's newest
    PROJECT_SNAPSHOT_LIMIT jobs. `resume` needs a `job_id` here, since seq numbers are per job.
    """

    project_id: str

    def target_groups(self) -> list[str] | None:
        project_id = _canonical_uuid(self.scope["url_route"]["kwargs"].get("project_id"))
        if project_id is None:
            return None
        self.project_id = project_id
        return [events.project_group_name(project_id)]

    async def load_snapshots(self, user: Any) -> list[dict[str, Any]] | None:
        return await _project_snapshots_for_user(self.project_id, user)

    async def resume_job_id(self, content: dict[str, Any]) -> str | None:
        given = content.get("job_id")
        if not isinstance(given, str):
            await self.send_error('resume on a project stream needs "job_id" (seq numbers are per job)')
            return None
        job_id = await _project_job(self.project_id, given)
        if job_id is None:
            await self.send_error("unknown job for this project")
        return job_id
