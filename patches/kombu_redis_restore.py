"""A Redis-broker worker puts back the messages it held when its connection broke, once it has reconnected.

Upstream (kombu 5.x, `kombu.transport.redis.QoS.restore_unacked`): when a worker's broker connection
breaks, the channel being closed requeues the messages the worker had received but not acknowledged (the
task running with acks_late, and those reserved behind it) — through a new connection to the *same* Redis,
at once. After a Sentinel failover that Redis is the dead master (the sentinels have not named the new one
yet), so the restore fails on its first message, the error is swallowed with the connection error, and the
channel is marked restored: the messages stay in the unacked hash (replicated to the new master) until
`visibility_timeout` (70 min here) makes another worker restore them. A scene task reserved behind a running
one at the kill was lost that way and its job waited for the reaper, or forever without beat (bench/failover.py;
no upstream issue tracks it).

Here a restore that fails on a connection error remembers the delivery tags of the messages whose task had
not started, and a consumer bootstep restores them through the new connection when the consumer starts
again (the unacked hash entry is found by tag; a tag already restored is a no-op). A task that had started
is left alone: it runs to its end in its pool process, and a copy would only wait on the stage's lease (in
bench/failover.py two such copies held both pool processes for 21 s); its entry stays for the visibility
timeout, whose redelivery finds the stage done.

Outside the tested kombu series, and for other brokers, nothing changes.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from .versions import supported

PATCH = "kombu_redis_restore"
TESTED = {"kombu": ">=5.3,<5.8"}

logger = logging.getLogger("patches")

_lock = threading.Lock()
_pending: set[str] = set()  # delivery tags whose restore failed with the connection


def _connection_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _started_tags() -> set[str]:
    """Delivery tags of the tasks this worker's pool has started and not finished."""
    from celery.worker import state

    tags = set()
    for request in list(state.active_requests):
        tag = (getattr(request, "delivery_info", None) or {}).get("delivery_tag")
        if tag is None and getattr(request, "message", None) is not None:
            tag = request.message.delivery_tag
        if tag is not None:
            tags.add(tag)
    return tags


def _remember(tags: list[str]) -> None:
    with _lock:
        _pending.update(tags)


def _take() -> list[str]:
    with _lock:
        tags = sorted(_pending)
        _pending.clear()
    return tags


class RestoreLostMessages(bootsteps.StartStopStep):
    """Consumer step: restore the messages a broken connection could not, through the new one."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        tags = _take()
        if not tags:
            return
        qos = getattr(c.connection.default_channel, "qos", None)
        if qos is None or not hasattr(qos, "restore_by_tag"):
            return
        failed = []
        for tag in tags:
            try:
                qos.restore_by_tag(tag)
            except _connection_errors():
                failed.append(tag)
        _remember(failed)  # the next start tries again
        logger.warning("patches: restored %d message(s) a lost broker connection held (%d still pending)",
                       len(tags) - len(failed), len(failed))


def install(app: Any) -> None:
    """Patch kombu's Redis QoS and add the consumer step to `app` (a no-op outside the tested kombu)."""
    if not supported(PATCH, TESTED):
        return
    from kombu.transport import redis as kombu_redis

    stock = kombu_redis.QoS.restore_unacked
    if getattr(stock, "patched", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> None:
        started = _started_tags()
        held = list(self._delivered)
        tags = [tag for tag in held if tag not in started]
        try:
            stock(self, client)
        except _connection_errors() as exc:
            _remember(tags)  # some may be restored already: restoring those again does nothing
            self._delivered.clear()
            logger.warning("patches: %d unacknowledged message(s) not restored (%r); restoring the %d not "
                           "started once the worker has reconnected", len(held), exc, len(tags))

    restore_unacked.patched = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked
    app.steps["consumer"].add(RestoreLostMessages)
