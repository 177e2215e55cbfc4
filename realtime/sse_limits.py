"""How many SSE streams one user may hold open in one web process (SSE_STREAMS_PER_USER).

A stream is cheap but not free (its generator, subscription and buffers): without a cap one user could
open streams until the process runs out of memory. A slot is taken when the view answers and given back
as soon as the stream ends or is closed (a client disconnect cancels and closes it), or, for a stream
that never started, when it is collected. The slot must not wait for collection: a closed stream can sit
in a reference cycle until the next full garbage collection, which patches/daphne.py makes rarer.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

_open: Counter[Any] = Counter()
_lock = threading.Lock()  # the view takes slots in the sync thread, the loop gives them back


def streams_per_user() -> int:
    return int(getattr(settings, "SSE_STREAMS_PER_USER", 20) or 0)


class _Slot:
    """One counted stream of one user; giving it back twice counts once."""

    def __init__(self, user_id: Any) -> None:
        self.user_id = user_id
        self.held = True

    def give_back(self) -> None:
        with _lock:
            if not self.held:
                return
            self.held = False
            _open[self.user_id] -= 1
            if _open[self.user_id] <= 0:
                del _open[self.user_id]


def stream_slot_take(*, user_id: Any, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes] | None:
    """`stream`, counted against the user's cap until it ends or is closed; None (nothing counted) at the cap."""
    limit = streams_per_user()
    with _lock:
        if limit and _open[user_id] >= limit:
            return None
        _open[user_id] += 1
    slot = _Slot(user_id)
    counted = _counted(stream, slot)
    weakref.finalize(counted, slot.give_back)  # never iterated (no `finally` runs): given back when collected
    return counted


async def _counted(stream: AsyncIterator[bytes], slot: _Slot) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(stream):  # closing this closes the stream (its subscription) too
            async for chunk in stream:
                yield chunk
    finally:
        slot.give_back()


def open_streams(user_id: Any) -> int:
    """The user's open streams in this process (for tests and metrics)."""
    with _lock:
        return _open[user_id]
