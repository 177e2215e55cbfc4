"""GET /healthz: database and Redis reachability plus the number of live Celery workers.

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
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)

HEALTH_STATES = ("ok", "down")
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
        from config.celery import app

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


HEALTH_RESPONSE = inline_serializer("Health", fields={
    "status": serializers.ChoiceField(choices=HEALTH_STATES),
    "database": serializers.ChoiceField(choices=HEALTH_STATES),
    "redis": serializers.ChoiceField(choices=HEALTH_STATES),
    "workers": serializers.IntegerField(allow_null=True, help_text="Live Celery workers (null: unknown)."),
    "down": serializers.ListField(child=serializers.CharField(), help_text="What is down, if anything."),
})


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Health of the database, Redis and the workers",
        auth=[],
        responses={200: HEALTH_RESPONSE, 503: OpenApiResponse(HEALTH_RESPONSE, description="Something is down.")},
    )
    def get(self, request: Request) -> Response:
        database, redis_ok = check_database(), check_redis()
        workers = count_live_workers() if redis_ok else None
        down = [name for name, ok in (("database", database), ("redis", redis_ok)) if not ok]
        minimum = int(settings.HEALTHZ["MIN_WORKERS"])
        if minimum and (workers or 0) < minimum:
            down.append("workers")
        body = {
            "status": "down" if down else "ok",
            "database": "ok" if database else "down",
            "redis": "ok" if redis_ok else "down",
            "workers": workers,
            "down": down,
        }
        return Response(body, status=503 if down else 200)
