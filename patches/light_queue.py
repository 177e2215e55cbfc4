"""A single-consumer asyncio queue that costs about 100 bytes while empty, for the queues every socket holds.

`asyncio.Queue` allocates three deques and an `asyncio.Event` (a fourth deque) when it is made, and an empty
deque is 760 bytes on CPython 3.11: about 3.3 KB per queue before anything is queued. A web process holds two
per idle websocket (daphne's input queue, the channel layer's queue of the consumer's channel), so 19,000
idle sockets kept ~125 MB of empty deques (`python -m bench.ws_memprofile`, docs/BENCHMARKS.md). This one
makes its deque on the first `put_nowait` and drops it once drained, and keeps at most one waiter future
(plus a list only while several coroutines wait). It implements what daphne and channels-redis call on
their queues (`put_nowait`, `get`, `get_nowait`, `qsize`, `empty`); it is unbounded, as theirs are.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class LightQueue:
    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiters: Any = None  # None, one Future, or a list of them while several getters wait

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._wake_one()

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an idle queue holds no deque
        return item

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._add_waiter(waiter)
            try:
                await waiter
            except BaseException:
                self._remove_waiter(waiter)
                if self._items and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the item is another getter's
                raise
            self._remove_waiter(waiter)
        return self.get_nowait()

    # --- waiters ------------------------------------------------------------------------------------------
    def _add_waiter(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters is None:
            self._waiters = waiter
        elif isinstance(self._waiters, list):
            self._waiters.append(waiter)
        else:
            self._waiters = [self._waiters, waiter]

    def _remove_waiter(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters is waiter:
            self._waiters = None
        elif isinstance(self._waiters, list):
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    def _wake_one(self) -> None:
        waiters = self._waiters
        for waiter in (waiters if isinstance(waiters, list) else (waiters,)):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
                return
