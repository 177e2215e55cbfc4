"""LightQueue: the per-socket queue of daphne's input and the channel layer's consumer channels."""
from __future__ import annotations

import asyncio
import sys

import pytest

from patches.light_queue import LightQueue


async def test_light_queue__hands_items_over_in_order_and_holds_no_deque_when_drained() -> None:
    queue = LightQueue()
    for item in range(3):
        queue.put_nowait(item)
    assert queue.qsize() == 3
    assert [await queue.get() for _ in range(3)] == [0, 1, 2]
    assert queue.empty() and queue._items is None
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_light_queue__a_waiting_get_is_woken_by_a_put() -> None:
    queue = LightQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("x")
    assert await asyncio.wait_for(getter, 1) == "x"
    assert queue._waiters is None


async def test_light_queue__several_getters_each_get_one_item() -> None:
    queue = LightQueue()
    getters = [asyncio.ensure_future(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in "abc":
        queue.put_nowait(item)
    assert sorted(await asyncio.wait_for(asyncio.gather(*getters), 1)) == ["a", "b", "c"]


async def test_light_queue__a_getter_cancelled_after_being_woken_leaves_the_item_to_another() -> None:
    queue = LightQueue()
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")  # wakes `first`
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "only"
    assert first.cancelled()


def test_light_queue__an_idle_queue_is_far_smaller_than_an_asyncio_queue() -> None:
    idle = sys.getsizeof(LightQueue())
    stock = asyncio.Queue()
    stock_size = sum(sys.getsizeof(part) for part in (stock, stock.__dict__, stock._queue, stock._getters,
                                                      stock._putters, stock._finished._waiters))
    assert idle * 10 < stock_size
