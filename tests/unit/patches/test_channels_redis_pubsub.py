"""The channels-redis pub/sub patch: applied on the tested channels-redis, the stock layer elsewhere."""
from __future__ import annotations

import asyncio
import os
import signal

from channels_redis.pubsub import RedisPubSubLoopLayer, RedisSingleShardConnection
from django.conf import settings

from patches import channels_redis_pubsub as pubsub
from patches.light_queue import LightQueue
from tests.redis_ha import RedisServer
from tests.unit.patches.test_versions import covers


async def _loop_layer_of(layer: pubsub.ResyncingPubSubChannelLayer) -> RedisPubSubLoopLayer:
    loop_layer = layer._get_layer()  # nothing connects until a channel subscribes
    await layer.flush()
    return loop_layer


def test_channels_redis_pubsub__tested_versions_cover_the_pinned_channels_redis() -> None:
    assert covers(pubsub.TESTED, "channels-redis")


async def test_channels_redis_pubsub__applied_on_the_tested_channels_redis() -> None:
    layer = pubsub.ResyncingPubSubChannelLayer(hosts=[settings.REDIS_CHANNELS_URL])
    loop_layer = await _loop_layer_of(layer)
    assert isinstance(layer._serializer, pubsub._DecodeOnceSerializerProxy)
    assert all(type(shard) is pubsub._ResyncingShard for shard in loop_layer._shards)
    # each consumer's channel waits in a LightQueue, and a group message still reaches it
    channel = await layer.new_channel()
    try:
        assert type(loop_layer.channels[channel]) is LightQueue
        await layer.group_add("light", channel)
        await layer.group_send("light", {"type": "probe"})
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "probe"}
    finally:
        await layer.flush()


async def test_channels_redis_pubsub__group_send_many_delivers_every_message_in_order() -> None:
    layer = pubsub.ResyncingPubSubChannelLayer(hosts=[settings.REDIS_CHANNELS_URL])
    first, second = await layer.new_channel(), await layer.new_channel()
    try:
        await layer.group_add("many-a", first)
        await layer.group_add("many-b", second)
        await layer.group_send_many([(group, {"type": "probe", "n": n}) for n in range(50)
                                     for group in ("many-a", "many-b")])
        for channel in (first, second):
            got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(50)]
            assert got == list(range(50))
    finally:
        await layer.flush()


async def test_channels_redis_pubsub__outside_the_tested_channels_redis_the_stock_layer_runs(installed,
                                                                                             caplog) -> None:
    installed(channels_redis="5.0.0")
    layer = pubsub.ResyncingPubSubChannelLayer(hosts=[settings.REDIS_CHANNELS_URL])
    loop_layer = await _loop_layer_of(layer)
    assert not isinstance(layer._serializer, pubsub._DecodeOnceSerializerProxy)
    assert type(loop_layer) is RedisPubSubLoopLayer
    assert all(type(shard) is RedisSingleShardConnection for shard in loop_layer._shards)
    assert "channels-redis 5.0.0 is outside" in caplog.text


async def test_channels_redis_pubsub__a_server_that_stops_answering_is_dropped_and_consumers_resync(
        monkeypatch, tmp_path) -> None:
    # Given a subscription on a Redis of its own, with a short liveness check
    monkeypatch.setattr(pubsub, "PING_AFTER_S", 0.5)
    monkeypatch.setattr(pubsub, "PONG_TIMEOUT_S", 0.5)
    server = RedisServer(tmp_path).start()
    layer = pubsub.ResyncingPubSubChannelLayer(hosts=[{"address": server.url, "socket_connect_timeout": 1,
                                                       "socket_timeout": 2}])
    try:
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        await layer.group_send("g", {"type": "probe"})
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "probe"}

        # When the server stops answering without closing anything (a hung process, a lost host), then answers
        # again on the same connection
        os.kill(server.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(2.5)  # past PING_AFTER_S + PONG_TIMEOUT_S, and a reconnect timing out on it
        os.kill(server.proc.pid, signal.SIGCONT)

        # Then the silent connection was given up for a new one, and the consumer is told to resync (over the
        # old connection, which works again, nothing would have said that pushes were missed)
        assert await asyncio.wait_for(layer.receive(channel), 10) == pubsub.RESYNC_EVENT
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        await layer.flush()
        server.stop()


async def test_channels_redis_pubsub__sync_group_sender_reaches_the_groups_subscribers_in_order() -> None:
    # Given two consumers' channels in two groups of the patched layer
    layer = pubsub.ResyncingPubSubChannelLayer(hosts=[settings.REDIS_CHANNELS_URL])
    first, second = await layer.new_channel(), await layer.new_channel()
    try:
        await layer.group_add("sync-a", first)
        await layer.group_add("sync-b", second)
        # When a thread without an event loop sends to both groups with the sync sender
        send_many = layer.sync_group_sender(1.0)
        assert send_many is not None
        await asyncio.to_thread(send_many, [(group, {"type": "probe", "n": n}) for n in range(20)
                                            for group in ("sync-a", "sync-b")])
        # Then each consumer receives its group's messages, in order, as group_send would deliver them
        for channel in (first, second):
            got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(20)]
            assert got == list(range(20))
    finally:
        await layer.flush()


def test_channels_redis_pubsub__no_sync_group_sender_with_several_shards() -> None:
    url = settings.REDIS_CHANNELS_URL
    assert pubsub.ResyncingPubSubChannelLayer(hosts=[url]).sync_group_sender(1.0) is not None
    assert pubsub.ResyncingPubSubChannelLayer(hosts=[url, url]).sync_group_sender(1.0) is None  # hashed shards


def test_channels_redis_pubsub__no_sync_group_sender_outside_the_tested_channels_redis(installed) -> None:
    installed(channels_redis="5.0.0")
    assert pubsub.ResyncingPubSubChannelLayer(hosts=[settings.REDIS_CHANNELS_URL]).sync_group_sender(1.0) is None
