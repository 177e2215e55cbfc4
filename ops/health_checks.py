"""The checks behind GET /healthz (ops/health.py): database, Redis, broker and artifact store reachability,
live Celery workers.

The broker is pinged by its Redis role when it is Redis; a RabbitMQ broker (an amqp:// CELERY_BROKER_URL)
is connected to afresh, each node of a `;` failover list tried once, each within HEALTHZ_BROKER_TIMEOUT_S
(TCP connect and AMQP handshake): a node that accepts connections but never answers cannot hang the probe.

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

from kombu import Connection

from config import amqp
from config.celery import app
from config.redis_roles import RedisRole

from . import redis_clients

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


def check_redis() -> dict[str, bool]:
    """{role: whether it answers PING} for every Redis role (each through its sentinels when configured: the
    current master); an amqp:// broker is no Redis role (check_amqp_broker)."""
    return {role.name: _ping(role) for role in settings.REDIS_ROLES.all()}


def _ping(role: RedisRole) -> bool:
    try:
        client = redis_clients.client(role, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        logger.warning("healthz: redis of the %s role unreachable (%s)", role.name, role.describe(), exc_info=True)
        return False


def check_amqp_broker() -> str | None:
    """None when a RabbitMQ node of the broker URL accepts us, else what is wrong (for operators)."""
    timeout = float(settings.HEALTHZ["BROKER_TIMEOUT_S"])
    options = {**(app.conf.broker_transport_options or {}), "read_timeout": timeout, "write_timeout": timeout}
    connection = Connection(app.conf.broker_url, connect_timeout=timeout, heartbeat=0, transport_options=options)
    try:
        # No pause between nodes and no second round: the probe answers within nodes x timeout.
        connection.ensure_connection(max_retries=max(len(connection.alt), 1) - 1, interval_start=0,
                                     interval_step=0, interval_max=0)
        return None
    except Exception as exc:
        logger.warning("healthz: rabbitmq broker unreachable (%s): %s", connection.as_uri(), exc)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        connection.release()


def broker_is_amqp() -> bool:
    return amqp.is_amqp(app.conf.broker_url)


def check_store() -> str | None:
    """None when the artifact store answers and lets us in, else what is wrong (for operators)."""
    from jobs.store import get_store

    try:
        get_store().check()
        return None
    except Exception as exc:
        logger.warning("healthz: artifact store check failed: %s", exc)
        return str(getattr(exc, "message", "") or exc) or type(exc).__name__


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
