"""How many SSE streams one user may hold open in one web process (SSE_STREAMS_PER_USER).

A stream is cheap but not free (its generator, subscription and buffers): without a cap one user could
open streams until the process runs out of memory. A slot is taken when the view answers and given back
when the stream's generator is gone (finished, closed on disconnect, or never started and collected), so
no path leaks one.
"""
from __future__ import annotations

import threading
import weakref
from collections import Counter
from typing import Any

from django.conf import settings

_open: Counter[Any] = Counter()
_lock = threading.Lock()  # the view takes slots in the sync thread, the loop gives them back


def streams_per_user() -> int:
    return int(getattr(settings, "SSE_STREAMS_PER_USER", 20) or 0)


def stream_slot_take(*, user_id: Any, stream: Any) -> bool:
    """Count `stream` against the user's cap; False (nothing counted) when the user is at the cap."""
    limit = streams_per_user()
    with _lock:
        if limit and _open[user_id] >= limit:
            return False
        _open[user_id] += 1
    weakref.finalize(stream, _give_back, user_id)
    return True


def _give_back(user_id: Any) -> None:
    with _lock:
        _open[user_id] -= 1
        if _open[user_id] <= 0:
            del _open[user_id]


def open_streams(user_id: Any) -> int:
    """The user's open streams in this process (for tests and metrics)."""
    with _lock:
        return _open[user_id]
