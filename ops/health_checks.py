"""The checks behind GET /healthz (ops/health.py): database and Redis reachability, live Celery workers.

Workers are counted with a broadcast `ping` (each live worker answers within HEALTHZ_PING_TIMEOUT_S).
That waits for the timeout, so the count is cached in-process for HEALTHZ_WORKERS_CACHE_S: frequent
probes stay cheap and the number is at most that old. No workers is reported, not treated as down,
unless HEALTHZ_MIN_WORKERS asks for some.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connection

from config.celery import app

logger = logging.getLogger(__name__)

_workers_lock = threading.Lock()
_workers_cache: dict[str, Any] = {"at": 0.0, "count": None}


def check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except Exception:
        logger.warning("healthz: database unreachable", exc_info=True)
        return False


def check_redis() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_BROKER_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        logger.warning("healthz: redis unreachable", exc_info=True)
        return False


def count_live_workers() -> int | None:
    """How many workers answered a ping (cached); None when the broker could not be asked."""
    ttl = float(settings.HEALTHZ["WORKERS_CACHE_S"])
    now = time.monotonic()
    with _workers_lock:
        if _workers_cache["count"] is not None and now - _workers_cache["at"] < ttl:
            return _workers_cache["count"]
    try:
        replies = app.control.ping(timeout=float(settings.HEALTHZ["PING_TIMEOUT_S"])) or []
        count: int | None = len(replies)
    except Exception:
        logger.warning("healthz: could not ping workers", exc_info=True)
        count = None
    with _workers_lock:
        _workers_cache.update(at=time.monotonic(), count=count)
    return count


def reset_workers_cache() -> None:
    with _workers_lock:
        _workers_cache.update(at=0.0, count=None)
