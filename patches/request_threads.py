"""Each HTTP request still gets a sync thread of its own, but the threads are kept for later requests.

Upstream (Django 5.2 `ASGIHandler.__call__`, asgiref 3.13 `ThreadSensitiveContext`): every request enters a
new ThreadSensitiveContext, whose first sync call starts a fresh one-thread executor; on exit asgiref
starts another thread to join it. Two thread starts and a join per request were about a fifth of a web
process's samples under the API load (docs/BENCHMARKS.md, "api"). asgiref 3.13 lets the caller supply
the context's executor and keeps it after the block, so idle one-thread executors wait here for the next
request. A request still has its thread to itself for its whole life (what thread-sensitive code such as
Django's per-thread database connections relies on): an executor goes back to the idle list only after a
no-op queued behind the request's calls has run, so a view still running after its client went away
keeps its executor until it ends. Thread reuse is what a threaded WSGI server does; Django resets
per-request state (connections, translations) on request_started/finished.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from asgiref.sync import ThreadSensitiveContext

from .versions import supported

PATCH = "request_threads"
TESTED = {"asgiref": "==3.13.*"}
KEEP_IDLE = 64  # idle threads kept; more concurrent requests than that start (and later stop) threads of their own

T = TypeVar("T")


class RequestThreads:
    """A free list of one-thread executors, one lent to each request for its lifetime."""

    def __init__(self, keep_idle: int = KEEP_IDLE) -> None:
        self.keep_idle = keep_idle
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()  # the list is touched from the event loop only; the lock is for tests

    async def run(self, handle: Callable[[], Awaitable[T]]) -> T:
        executor = self._take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                return await handle()
        finally:
            await self._give_back(executor)

    def idle_count(self) -> int:
        return len(self._idle)

    def _take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    async def _give_back(self, executor: ThreadPoolExecutor) -> None:
        # Whatever the request left running (a view whose client disconnected) must end first.
        await asyncio.wrap_future(executor.submit(_nothing))
        with self._lock:
            if len(self._idle) < self.keep_idle:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)


def _nothing() -> None:
    return None


def enabled() -> bool:
    return supported(PATCH, TESTED)
