"""channels-redis's pub/sub channel layer, plus a resync signal after its Redis connection comes back and
one decode of a group message per process, a batched `group_send_many` for the publisher, and
`sync_group_sender` for a publisher in a synchronous thread (no event loop hop).

Upstream (channels-redis 4.3, `RedisSingleShardConnection._do_receiving`): Redis pub/sub keeps nothing for
a subscriber that is away, and while the connection is down (Redis restarted, a network blip) every push to
this process's groups is lost while redis-py re-subscribes silently (django/channels_redis#256). The
`on_disconnect` / `on_reconnect` options added for this by django/channels_redis#259 are still accepted by
`RedisPubSubLoopLayer` but no longer fired since the layer moved to redis-py. A client whose job finished
meanwhile would wait forever on an open socket. So once the receive loop reads again after a failure,
each local consumer gets a `layer.resync` message and catches up from JobEvent
(realtime.consumers.JobStatusConsumer.layer_resync), the same way it fills a gap between two pushes.

A subscription that hears nothing for PING_AFTER_S sends PING and, without an answer, reconnects: a server
that stopped answering without closing the connection (host lost, hung, partitioned) would otherwise leave
the subscriber waiting forever, its reads never failing.

The hosts may be URLs or channels-redis's sentinel entries ({"sentinels": [...], "master_name": ...}, as
config/redis_roles.py builds them): each shard keeps upstream's `create_pool`, so with sentinels a
reconnection asks them for the current master and the resync above also covers a failover.

Each consumer's channel queue is a LightQueue (patches/light_queue.py), not an asyncio.Queue: idle sockets
hold one each.

Outside the tested channels-redis series the layer is the stock RedisPubSubChannelLayer (no resync: a
client catches up when it reconnects).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close, decode_hosts

from .light_queue import LightQueue
from .versions import supported

logger = logging.getLogger(__name__)

PATCH = "channels_redis_pubsub"
TESTED = {"channels-redis": "==4.3.*"}
RESYNC_EVENT = {"type": "layer.resync"}
# One failed read, then a pause before the next try (channels-redis pauses 1 s). A quarter second: after a
# Sentinel failover or a restart the subscriptions come back within 0.25 s of the new master answering,
# not up to 1 s later (bench/failover.py), for a few cheap refused connections a second while it is away.
RETRY_PAUSE_S = 0.25
# A subscriber only reads, so a connection to a server that stopped answering without closing it (its host
# lost, a hung process, a partition) would stay silent forever: no read fails. After PING_AFTER_S without a
# message the subscription sends PING, and without any answer PONG_TIMEOUT_S later it counts the connection
# as lost, drops it and reconnects (through the sentinels: to the new master).
PING_AFTER_S = 5.0
PONG_TIMEOUT_S = 3.0


def _sync_pool(host: dict[str, Any], timeout_s: float) -> redis.ConnectionPool:
    """channels_redis.utils.create_pool's pool for `host` (a URL or sentinel entry), for redis-py's sync client."""
    host = {**host, "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    if "address" in host:
        return redis.ConnectionPool.from_url(host.pop("address"), **host)
    master_name = host.pop("master_name", None)
    if master_name is not None:
        from redis.sentinel import Sentinel, SentinelConnectionPool

        sentinels, sentinel_kwargs = host.pop("sentinels"), host.pop("sentinel_kwargs", None)
        # Asking the sentinels for the master is bounded by the same timeout as the send itself.
        sentinel_kwargs = {**(sentinel_kwargs or {}), "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
        return SentinelConnectionPool(master_name, Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs), **host)
    return redis.ConnectionPool(**host)


class _SilentServer(ConnectionError):
    """The subscription's server did not answer a PING in time."""


class _ResyncingShard(RedisSingleShardConnection):
    async def _do_receiving(self) -> None:
        loop = asyncio.get_running_loop()
        broken, heard, pinged = False, loop.time(), None
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if broken:
                        # The read succeeded, so redis-py reconnected and re-sent our SUBSCRIBEs first:
                        # every push from now on arrives; what was published before is in the database.
                        broken, heard, pinged = False, loop.time(), None
                        logger.warning("realtime: channel layer reconnected; resyncing local consumers")
                        self._announce_resync()
                    heard, pinged = await self._check_alive(message, loop.time(), heard, pinged)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, asyncio.TimeoutError, GeneratorExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - as channels-redis: keep the loop alive
                if not broken:
                    logger.warning("realtime: channel layer connection lost: %r", exc)
                broken = True
                await self._drop_connection()
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _check_alive(self, message: Any, now: float, heard: float, pinged: float | None) -> tuple[float, float | None]:
        """(heard, pinged) after this read: PING a silent server, give up on one that does not answer."""
        if message is not None:  # a message or our PONG
            return now, None
        if pinged is None:
            if now - heard > PING_AFTER_S:
                await self._pubsub.ping()
                return heard, now
            return heard, None
        if now - pinged > PONG_TIMEOUT_S:
            raise _SilentServer(f"no answer to PING within {PONG_TIMEOUT_S:g} s")
        return heard, pinged

    async def _drop_connection(self) -> None:
        """Close the subscription's socket, so the next read connects anew (and re-subscribes)."""
        connection = getattr(self._pubsub, "connection", None)
        if connection is not None:
            try:
                await connection.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail too; it is gone either way
                pass

    def _announce_resync(self) -> None:
        layer = self.channel_layer  # the per-loop layer: its `channels` are this process's consumers
        data = layer.channel_layer.serialize(RESYNC_EVENT)
        for queue in list(layer.channels.values()):
            queue.put_nowait(data)


class _DecodeOnceSerializerProxy:
    """The layer's serializer, but a group message put into N local queues is decoded once, not N times.

    channels-redis puts the same bytes object into the queue of every local channel of a group and each
    consumer's `receive` deserializes it. The consumers then share one dict: they read it and never mutate
    it (realtime/consumers.py).
    """

    def __init__(self, serializer: Any) -> None:
        self._serializer = serializer
        self._last: tuple[Any, Any] | None = None  # (raw bytes object, decoded message)

    def serialize(self, message: Any) -> Any:
        return self._serializer.serialize(message)

    def deserialize(self, message: Any) -> Any:
        last = self._last
        if last is not None and last[0] is message:
            return last[1]
        decoded = self._serializer.deserialize(message)
        self._last = (message, decoded)
        return decoded


class _ResyncingLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_ResyncingShard(shard.host, self) for shard in self._shards]

    async def _subscribe_to_channel(self, channel: str) -> None:
        # Upstream's, with two changes. A LightQueue: an asyncio.Queue per consumer's channel is ~3.3 KB while
        # empty, held by every idle socket (patches/light_queue.py); only the channel's consumer reads it.
        # And upstream keeps the channel's queue when the subscription fails (Redis down): a consumer refused
        # for that (realtime/layer_down.py) would leave it forever.
        self.channels[channel] = LightQueue()
        try:
            await self._get_shard(channel).subscribe(channel)
        except BaseException:
            self.channels.pop(channel, None)
            raise


class ResyncingPubSubChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer whose consumers are told to resync after a lost Redis connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patched = supported(PATCH, TESTED)
        if self.patched:
            self._serializer = _DecodeOnceSerializerProxy(self._serializer)

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """`group_send` of each (group, message), in order: one pipelined round trip per shard.

        Upstream sends one PUBLISH per message and waits for its reply, one at a time per shard (the shard's
        lock), so a publisher is capped at one message per Redis round trip: realtime/publish.py's sender
        fell a second behind at 420 progress reports/s (docs/BENCHMARKS.md, push10x). A group always maps
        to the same shard, so each group's messages keep their order.
        """
        if not self.patched:
            for group, message in sends:
                await self.group_send(group, message)
            return
        layer = self._get_layer()
        by_shard: dict[Any, list[tuple[str, bytes]]] = {}
        for group, message in sends:
            channel = layer._get_group_channel_name(group)
            by_shard.setdefault(layer._get_shard(channel), []).append((channel, self.serialize(message)))
        for shard, items in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for channel, data in items:
                    pipe.publish(channel, data)
                await pipe.execute()

    def sync_group_sender(self, timeout_s: float) -> Callable[[list[tuple[str, dict[str, Any]]]], None] | None:
        """A synchronous `group_send_many` over a redis-py client of its own (connect and reply each within
        `timeout_s`; it raises what redis-py raises), for a caller without an event loop: realtime/publish.py
        sends from the reporting thread instead of waking its publisher thread. None unless patched and with
        one shard (with several, upstream's hashing decides where each group goes)."""
        hosts = decode_hosts(self._kwargs.get("hosts"))
        if not self.patched or len(hosts) != 1:
            return None
        client = redis.Redis(connection_pool=_sync_pool(hosts[0], timeout_s))
        prefix = self._kwargs.get("prefix", "asgi")

        def send_many(sends: list[tuple[str, dict[str, Any]]]) -> None:
            pipe = client.pipeline(transaction=False)
            for group, message in sends:
                # RedisPubSubLoopLayer._get_group_channel_name and group_send's PUBLISH, without a loop layer.
                pipe.publish(f"{prefix}__group__{group}", self.serialize(message))
            pipe.execute()

        return send_many

    def _get_layer(self) -> RedisPubSubLoopLayer:
        if not self.patched:
            return super()._get_layer()
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = _ResyncingLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer
