"""The only code that talks to the channel layer: pushes committed job events to their groups.

`publish_job_update` / `apublish_job_update` (the seed's helpers) record an update through the job service;
its committed event is what gets pushed.

jobs/listeners.py calls `on_event_committed` after each job change commits, in web and worker processes
alike. It must be cheap and never raise, so it only enqueues; a sender drains the queue in order (so one
job's events leave a process in seq order) and sends each message to `job_<id>` and `project_<id>`, all
the messages queued meanwhile in one pipelined Redis round trip.

Where the sender runs:
- called from a running event loop, or from a sync_to_async thread of one (daphne, async tests): a drain
  task on that loop, reusing the loop's channel-layer connections;
- otherwise (Celery workers, management commands): one background thread per process with its own loop
  and a persistent channel layer. `async_to_sync(group_send)` would build a loop and a Redis connection per
  call (~5 ms); this costs a queue put. `flush()` waits (bounded) for the queue to drain; it runs after every
  Celery task (realtime/celery_hooks.py) and at exit, so a worker child that exits right after its task does
  not lose the final event.
- a committed event in such a process, when nothing waits in that thread, is sent by the calling thread
  itself (one pipelined PUBLISH pair on a redis-py connection, at most DIRECT_TIMEOUT_S): waking the
  publisher thread for every push put one more thread to schedule between the commit and Redis
  (_DirectSender; docs/BENCHMARKS.md, push). A failed direct send goes to the thread, which retries.

A failed send is logged and counted (ops.metrics); clients recover through the snapshot and `resume`.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any

from asgiref.sync import SyncToAsync, sync_to_async
from redis.exceptions import RedisError

from jobs.listeners import CommittedEvent
from ops import metrics

from . import events

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 5.0  # the bounded wait at task end / exit; a healthy Redis answers in milliseconds
SEND_TIMEOUT_S = 5.0  # one group_send; past this Redis is considered unavailable for that message
RESEND_PAUSE_S = 0.2  # before the one retry of a send that failed on its connection
MAX_BATCH = 200  # queued messages sent in one pipelined round trip (bounds one send's size and time)
DIRECT_TIMEOUT_S = 0.5  # a direct send's connect and reply (_DirectSender); past it the thread sends instead
DIRECT_PAUSE_S = 5.0  # after a direct send failed, messages go through the publisher thread for this long

def _channel_layer() -> Any:
    from channels.layers import get_channel_layer

    return get_channel_layer()


async def send_status(job_id: str, project_id: str, message: dict[str, Any]) -> bool:
    """group_send one status message to the job's and the project's group; False (logged) on failure."""
    layer = _channel_layer()
    if layer is None:
        return False
    payload = events.group_event(message)
    ok = True
    for group in (events.job_group_name(job_id), events.project_group_name(project_id)):
        try:
            try:
                await asyncio.wait_for(layer.group_send(group, payload), SEND_TIMEOUT_S)
            except (OSError, ConnectionError, RedisError):
                # After a Redis restart the first command on a pooled connection fails; a new one works
                # (tests/reliability/test_redis_restart.py lost a job's final push to exactly this).
                await asyncio.sleep(RESEND_PAUSE_S)
                await asyncio.wait_for(layer.group_send(group, payload), SEND_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - Redis down, timeout, serialisation: never into the caller
            ok = False
            logger.warning("realtime: group_send to %s failed: %r", group, exc,
                           extra={"job_id": job_id, "seq": message.get("seq")})
    metrics.count_push(ok)
    return ok


async def send_statuses(items: list[tuple[str, str, dict[str, Any]]]) -> None:
    """send_status for each (job_id, project_id, message), in order, as one pipelined round trip when the
    layer offers `group_send_many` (patches/channels_redis_pubsub.py), else one message at a time."""
    layer = _channel_layer()
    send_many = getattr(layer, "group_send_many", None) if layer is not None else None
    if send_many is None:
        for job_id, project_id, message in items:
            await send_status(job_id, project_id, message)
        return
    sends = []
    for job_id, project_id, message in items:
        payload = events.group_event(message)
        sends += [(events.job_group_name(job_id), payload), (events.project_group_name(project_id), payload)]
    try:
        try:
            await asyncio.wait_for(send_many(sends), SEND_TIMEOUT_S)
        except (OSError, ConnectionError, RedisError):
            await asyncio.sleep(RESEND_PAUSE_S)  # as in send_status: a new connection after a Redis restart
            await asyncio.wait_for(send_many(sends), SEND_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - Redis down, timeout, serialisation: never into the caller
        for job_id, _, message in items:
            logger.warning("realtime: group_send of job %s's event failed: %r", job_id, exc,
                           extra={"job_id": job_id, "seq": message.get("seq")})
            metrics.count_push(False)
        return
    for _ in items:
        metrics.count_push(True)


class _Pending:
    """How many messages were handed over and not yet sent, across senders (for flush())."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def add(self) -> None:
        with self.cond:
            self.count += 1

    def done(self) -> None:
        with self.cond:
            self.count -= 1
            if self.count <= 0:
                self.count = 0
                self.cond.notify_all()

    def wait(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count == 0, timeout)


_pending = _Pending()


class _LoopSender:
    """Sends queued messages one at a time on one event loop (one drain task, so order is kept)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pending: _Pending | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.loop = loop
        self.pending = pending  # counted only for the thread sender, which flush() waits for
        self.lock = lock  # the thread sender's: held while sending, so a direct send in flight goes first
        self.queue: deque[tuple[str, str, dict[str, Any]]] = deque()
        self.wakeup: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    def submit(self, item: tuple[str, str, dict[str, Any]]) -> None:
        """Thread-safe: hand one message to the loop."""
        if self.pending is not None:
            self.pending.add()
        try:
            self.loop.call_soon_threadsafe(self._enqueue, item)
        except RuntimeError:  # the loop closed under us
            if self.pending is not None:
                self.pending.done()
            raise

    def _enqueue(self, item: tuple[str, str, dict[str, Any]]) -> None:
        self.queue.append(item)
        if self.task is None or self.task.done():
            self.wakeup = asyncio.Event()
            self.task = self.loop.create_task(self._drain())
        assert self.wakeup is not None
        self.wakeup.set()

    async def _drain(self) -> None:
        assert self.wakeup is not None
        while True:
            while self.queue:
                # What queued while the last send was out goes in one round trip (send_statuses), so a
                # sender that fell behind catches up instead of paying one Redis round trip per message.
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), MAX_BATCH))]
                if self.lock is not None:
                    self.lock.acquire()  # blocks this thread's loop for one direct send at most
                try:
                    await send_statuses(batch)
                finally:
                    if self.lock is not None:
                        self.lock.release()
                    if self.pending is not None:
                        for _ in batch:
                            self.pending.done()
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), 60.0)
            except asyncio.TimeoutError:
                if not self.queue:
                    return  # idle: the next submit starts a new drain task


class _ThreadSender:
    """A daemon thread running its own loop with one _LoopSender (sync processes: Celery workers)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sender: _LoopSender | None = None
        self.thread = threading.Thread(target=self._run, name="realtime-publisher", daemon=True)
        self.thread.start()
        self.ready.wait(5.0)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.sender = _LoopSender(self.loop, _pending, _send_lock)
        self.ready.set()
        self.loop.run_forever()

    def submit(self, item: tuple[str, str, dict[str, Any]]) -> None:
        if self.sender is None:
            raise RuntimeError("realtime publisher thread did not start")
        self.sender.submit(item)


class _DirectSender:
    """Sends a committed event from the calling (sync) thread when the publisher thread holds nothing.

    `_send_lock` is held by a direct send and by each of the thread's sends, and a direct send happens only
    while nothing is pending there, so one process's messages still leave in the order they were handed
    over. A caller never waits for the thread: when the lock is busy, its message queues behind.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        make = getattr(layer, "sync_group_sender", None) if layer is not None else None
        self.send_many = make(DIRECT_TIMEOUT_S) if make is not None else None
        self.paused_until = 0.0

    def submit(self, item: tuple[str, str, dict[str, Any]]) -> None:
        if self.send_many is not None and time.monotonic() >= self.paused_until and \
                _send_lock.acquire(blocking=False):
            try:
                if _pending.count == 0 and self._send(item):
                    return
                _thread_sender_for_caller().submit(item)  # under the lock: the thread sends it after us
            finally:
                _send_lock.release()
            return
        _thread_sender_for_caller().submit(item)

    def _send(self, item: tuple[str, str, dict[str, Any]]) -> bool:
        job_id, project_id, message = item
        assert self.send_many is not None
        try:
            payload = events.group_event(message)
            self.send_many([(events.job_group_name(job_id), payload), (events.project_group_name(project_id), payload)])
        except Exception as exc:  # noqa: BLE001 - Redis down or slow: the thread's send retries and logs
            self.paused_until = time.monotonic() + DIRECT_PAUSE_S
            logger.info("realtime: direct send of job %s's event failed (%r); the publisher thread sends for %g s",
                        job_id, exc, DIRECT_PAUSE_S)
            return False
        metrics.count_push(True)
        return True


_lock = threading.Lock()
_send_lock = threading.Lock()  # a direct send, or one send of the publisher thread (_DirectSender)
_thread_sender: _ThreadSender | None = None
_direct_sender: _DirectSender | None = None
_loop_senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSender] = weakref.WeakKeyDictionary()


def _caller_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop this call belongs to: the running one, or the one a sync_to_async thread serves."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid():
        loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
        if loop is not None and loop.is_running():
            return loop
    return None


def _sender_for_caller(direct: bool = False) -> _LoopSender | _ThreadSender | _DirectSender:
    """The caller's loop's sender; without a loop the publisher thread, or with `direct` the _DirectSender."""
    global _direct_sender
    loop = _caller_loop()
    with _lock:
        if loop is not None:
            sender = _loop_senders.get(loop)
            if sender is None:
                sender = _loop_senders[loop] = _LoopSender(loop)
            return sender
        if direct:
            layer = _channel_layer()
            if _direct_sender is None or _direct_sender.layer is not layer:  # settings or a bench swapped it
                _direct_sender = _DirectSender(layer)
            return _direct_sender
    return _thread_sender_for_caller()


def _thread_sender_for_caller() -> _ThreadSender:
    global _thread_sender
    with _lock:
        if _thread_sender is None or not _thread_sender.thread.is_alive():
            _thread_sender = _ThreadSender()
        return _thread_sender


def publish_status(*, job_id: str, project_id: str, message: dict[str, Any], direct: bool = False) -> None:
    """Queue one status message for the job's and project's groups; never raises. `direct`: a sync caller
    may send it itself (_DirectSender) — one message at a time, so not for a pass that pushes many at once
    (jobs/queue_positions.py), which the publisher thread pipelines."""
    try:
        _sender_for_caller(direct).submit((str(job_id), str(project_id), message))
    except Exception:  # noqa: BLE001 - the caller has committed; a push failure must not reach it
        metrics.count_push(False)
        logger.exception("realtime: could not queue the push of job %s", job_id)


def on_event_committed(event: CommittedEvent) -> None:
    """jobs.listeners hook: push a committed event to everyone watching the job or its project."""
    publish_status(job_id=event.job_id, project_id=event.project_id, message=events.committed_message(event),
                   direct=True)


def publish_job_update(job_id: Any, status: str, progress: float | None = None,
                       current_stage: str | None = None) -> dict[str, Any]:
    """Record a job update through the job service (JobService.update_job_status) and push it to the job's
    and project's groups once committed; returns the job's resulting `status` message.

    The push is the recorded event's (on_event_committed), so no client sees a change the job's events
    do not hold; an update the state table refuses (a finished job) records and pushes nothing.
    """
    from jobs.services import JobService

    job = JobService.update_job_status(job_id, status, progress=progress, current_stage=current_stage)
    return events.snapshot_message(job)


async def apublish_job_update(job_id: Any, status: str, progress: float | None = None,
                              current_stage: str | None = None) -> dict[str, Any]:
    """`publish_job_update` for async code (consumers, async views): the database work runs in a thread."""
    return await sync_to_async(publish_job_update, thread_sensitive=True)(job_id, status, progress, current_stage)


def flush(timeout: float = FLUSH_TIMEOUT_S) -> bool:
    """Wait up to `timeout` seconds until every queued message was sent (or failed); True if drained.

    Covers the background thread sender (sync processes); messages scheduled on a running loop are that
    loop's business, and waiting here from the loop's own thread could only block it.
    """
    if _pending.count == 0:
        return True
    if _caller_loop() is not None:
        return False
    return _pending.wait(timeout)


def _flush_at_exit() -> None:
    if _pending.count and not _pending.wait(FLUSH_TIMEOUT_S):
        logger.warning("realtime: %s job event(s) not pushed before exit", _pending.count)


def _reset_after_fork() -> None:
    """A forked child (Celery prefork) inherits no threads: start from scratch there."""
    global _thread_sender, _direct_sender, _pending, _lock, _send_lock, _loop_senders
    _thread_sender = _direct_sender = None
    _pending = _Pending()
    _lock = threading.Lock()
    _send_lock = threading.Lock()
    _loop_senders = weakref.WeakKeyDictionary()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_reset_after_fork)
