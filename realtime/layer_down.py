"""The answer a push stream gets while the channel layer's Redis (CHANNEL_LAYER_REDIS_URL) is down.

Every websocket and SSE stream subscribes through the channel layer before it sends anything; with its
Redis down that subscription raises. Uncaught, daphne answered a websocket handshake with a bare HTTP 500
and cut an SSE response after its headers. Instead:

- SSE: the view pings the layer's Redis before it returns the stream (a StreamingHttpResponse's status is
  sent before the stream runs) and answers 503 with a reason and Retry-After (`RealtimeUnavailable`); if
  Redis goes between that ping and the subscription, the open stream sends an `error` event and ends.
- websocket: accepted, then closed with 4503 and a reason: daphne cannot send an HTTP status for a
  handshake, a close before accepting reaches the client as a bare 403, and its websocket library lets an
  application close only with 1000 or 3000-4999 (not RFC 6455's 1013 "try again later"); 4503 mirrors
  HTTP 503. static/js/jobsocket.js treats it as a failure: it backs off, then falls back to SSE or polling.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException

from ops import redis_clients

logger = logging.getLogger(__name__)

REASON = "realtime updates unavailable: the channel layer's Redis does not answer; retry shortly"
RETRY_AFTER_S = 5  # about a Sentinel failover or a restart; clients poll the REST API meanwhile
CLOSE_TRY_AGAIN_LATER = 4503
PING_TIMEOUT_S = 1.0
# What the channel layer raises when its Redis is unreachable, refuses, or is mid-failover (redis-py's
# ConnectionError covers Sentinel's MasterNotFoundError); OSError for a socket error redis-py did not wrap.
LAYER_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                                 OSError)


class RealtimeUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = REASON
    default_code = "realtime_unavailable"
    wait = RETRY_AFTER_S  # DRF's handler turns `wait` into the Retry-After header


def _layer_is_redis() -> bool:
    return "channels_redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]


def require_layer() -> None:
    """Raise RealtimeUnavailable unless the channel layer's Redis answers PING (within PING_TIMEOUT_S)."""
    if not _layer_is_redis():
        return
    try:
        client = redis_clients.probe_client(settings.REDIS_ROLES.channels, PING_TIMEOUT_S)
        client.ping()
    except (redis.RedisError, OSError) as exc:
        log_refused(f"SSE ({settings.REDIS_ROLES.channels.describe()})", exc)
        raise RealtimeUnavailable() from exc


def log_refused(what: str, exc: BaseException) -> None:
    logger.warning("realtime: %s refused, the channel layer is unavailable: %r", what, exc)


async def refuse_websocket(receive: Any, send: Any, exc: BaseException) -> None:
    """Answer a websocket whose consumer could not subscribe: accept the handshake, close with 1013."""
    log_refused("websocket", exc)
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": REASON})
