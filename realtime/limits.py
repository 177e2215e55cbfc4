"""What one websocket may ask of a web process: messages per second, sockets per user, waiting messages.

The unsent-bytes cap and the keep-alive live in the web server itself (patches/daphne_websocket.py); the
limits here are the consumer's. Settings: `WEBSOCKETS` in config/settings.py (`WS_*` variables).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings

CLOSE_TOO_MANY = 4429  # too many messages (rate limit, or a flood waiting behind a slow reader) or sockets

# What a client message costs from its socket's budget: refresh and resume read the database and send
# snapshots or history, a ping or a malformed frame is answered from memory.
COST_CHEAP = 1.0
COST_DATABASE = 5.0


@dataclass(frozen=True)
class WebsocketLimits:
    SEND_BUFFER_BYTES: int = 1024 * 1024  # unsent bytes per socket (patches/daphne_websocket.py)
    SEND_STALL_S: float = 10.0  # how long a reader may leave that much unread before 4413
    MESSAGES_PER_S: float = 20.0  # budget refill per socket (a ping costs 1, refresh/resume 5)
    MESSAGES_BURST: float = 100.0  # budget size per socket
    STRIKES: int = 20  # messages over budget answered with an error before the socket is closed (4429)
    INBOX_MAX: int = 100  # client messages waiting for the consumer before the socket is closed (4429)
    SOCKETS_PER_USER: int = 20  # open sockets of one user in one web process (0: no limit)
    QUIET_CHECK_S: float = 15.0  # a socket that heard nothing this long about an unfinished job re-reads seq


def websocket_limits() -> WebsocketLimits:
    """settings.WEBSOCKETS with defaults (read each time: tests override settings)."""
    configured = getattr(settings, "WEBSOCKETS", None) or {}
    known = {f.name for f in fields(WebsocketLimits)}
    return WebsocketLimits(**{k: v for k, v in configured.items() if k in known})


class MessageBudget:
    """A token bucket per socket: `refill` per second up to `size`; spending past it is a strike."""

    __slots__ = ("size", "refill", "tokens", "stamp", "strikes")

    def __init__(self, *, size: float, refill: float) -> None:
        self.size, self.refill = size, refill
        self.tokens, self.stamp, self.strikes = size, time.monotonic(), 0

    def spend(self, cost: float) -> bool:
        """Take `cost` from the budget; False (and one more strike) when there is not enough."""
        now = time.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        self.strikes += 1
        return False


class SocketRegistry:
    """The open, authorised consumers of this process, by user (the per-user cap, the quiet-socket sweep)."""

    def __init__(self) -> None:
        self.by_user: dict[Any, set[Any]] = defaultdict(set)

    def add(self, user_id: Any, consumer: Any, limit: int) -> bool:
        """Register `consumer`; False (not registered) when the user already has `limit` sockets here."""
        sockets = self.by_user[user_id]
        if limit and len(sockets) >= limit:
            if not sockets:
                del self.by_user[user_id]
            return False
        sockets.add(consumer)
        return True

    def remove(self, user_id: Any, consumer: Any) -> None:
        sockets = self.by_user.get(user_id)
        if sockets is not None:
            sockets.discard(consumer)
            if not sockets:
                del self.by_user[user_id]

    def all(self) -> list[Any]:
        return [consumer for sockets in self.by_user.values() for consumer in sockets]


registry = SocketRegistry()
