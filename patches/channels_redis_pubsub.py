"""channels-redis's pub/sub channel layer, plus a resync signal after its Redis connection comes back and
one decode of a group message per process.

Upstream (channels-redis 4.3, `RedisSingleShardConnection._do_receiving`): Redis pub/sub keeps nothing for
a subscriber that is away, and while the connection is down (Redis restarted, a network blip) every push to
this process's groups is lost while redis-py re-subscribes silently (django/channels_redis#256). The
`on_disconnect` / `on_reconnect` options added for this by django/channels_redis#259 are still accepted by
`RedisPubSubLoopLayer` but no longer fired since the layer moved to redis-py. A client whose job finished
meanwhile would wait forever on an open socket. So once the receive loop reads again after a failure,
each local consumer gets a `layer.resync` message and catches up from JobEvent
(realtime.consumers.JobStatusConsumer.layer_resync), the same way it fills a gap between two pushes.

Outside the tested channels-redis series the layer is the stock RedisPubSubChannelLayer (no resync: a
client catches up when it reconnects).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close

from .versions import supported

logger = logging.getLogger(__name__)

PATCH = "channels_redis_pubsub"
TESTED = {"channels-redis": "==4.3.*"}
RESYNC_EVENT = {"type": "layer.resync"}
RETRY_PAUSE_S = 1.0  # as channels-redis: one failed read, then a pause before the next try


class _ResyncingShard(RedisSingleShardConnection):
    async def _do_receiving(self) -> None:
        broken = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if broken:
                        # The read succeeded, so redis-py reconnected and re-sent our SUBSCRIBEs first:
                        # every push from now on arrives; what was published before is in the database.
                        broken = False
                        logger.warning("realtime: channel layer reconnected; resyncing local consumers")
                        self._announce_resync()
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, asyncio.TimeoutError, GeneratorExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - as channels-redis: keep the loop alive
                if not broken:
                    logger.warning("realtime: channel layer connection lost: %r", exc)
                broken = True
                await asyncio.sleep(RETRY_PAUSE_S)

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


class ResyncingPubSubChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer whose consumers are told to resync after a lost Redis connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patched = supported(PATCH, TESTED)
        if self.patched:
            self._serializer = _DecodeOnceSerializerProxy(self._serializer)

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
