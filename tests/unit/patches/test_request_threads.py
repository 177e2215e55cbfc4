"""Request threads: each request has a sync thread to itself for its life, and the threads are reused."""
from __future__ import annotations

import asyncio
import threading

from asgiref.sync import sync_to_async

from patches import request_threads
from patches.request_threads import RequestThreads
from tests.unit.patches.test_versions import covers


def _thread_of_sync_call():
    async def handle() -> int:
        return await sync_to_async(threading.get_ident, thread_sensitive=True)()

    return handle


def test_request_threads__tested_versions_cover_the_pinned_asgiref() -> None:
    assert covers(request_threads.TESTED, "asgiref")
    assert request_threads.enabled()


def test_request_threads__a_request_after_another_runs_on_the_same_thread() -> None:
    threads = RequestThreads()

    async def two() -> tuple[int, int]:
        return await threads.run(_thread_of_sync_call()), await threads.run(_thread_of_sync_call())

    first, second = asyncio.run(two())
    assert first == second != threading.get_ident()
    assert threads.idle_count() == 1


def test_request_threads__concurrent_requests_never_share_a_thread() -> None:
    threads = RequestThreads()
    inside = threading.Barrier(3, timeout=5)  # three requests' sync calls at once, each on its own thread

    def meet() -> int:
        inside.wait()
        return threading.get_ident()

    async def request() -> int:
        return await sync_to_async(meet, thread_sensitive=True)()

    async def three() -> list[int]:
        return list(await asyncio.gather(*(threads.run(request) for _ in range(3))))

    assert len(set(asyncio.run(three()))) == 3
    assert threads.idle_count() == 3


def test_request_threads__a_thread_still_busy_after_its_request_was_cancelled_is_not_lent() -> None:
    threads = RequestThreads()
    release = threading.Event()
    busy_thread: list[int] = []

    def slow_view() -> None:
        busy_thread.append(threading.get_ident())
        release.wait(5)

    async def abandoned() -> None:
        await sync_to_async(slow_view, thread_sensitive=True)()

    async def scenario() -> int:
        task = asyncio.ensure_future(threads.run(abandoned))
        while not busy_thread:
            await asyncio.sleep(0.01)
        task.cancel()  # the client went away; the view's thread runs on
        await asyncio.sleep(0.05)
        other = await threads.run(_thread_of_sync_call())
        release.set()
        await asyncio.gather(task, return_exceptions=True)
        return other

    assert asyncio.run(scenario()) != busy_thread[0]


def test_request_threads__idle_threads_beyond_the_bound_are_stopped() -> None:
    threads = RequestThreads(keep_idle=1)
    inside = threading.Barrier(2, timeout=5)

    async def request() -> None:
        await sync_to_async(inside.wait, thread_sensitive=True)()

    async def two() -> None:
        await asyncio.gather(threads.run(request), threads.run(request))

    asyncio.run(two())
    assert threads.idle_count() == 1
