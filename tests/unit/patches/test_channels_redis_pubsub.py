"""The channels-redis pub/sub patch: applied on the tested channels-redis, the stock layer elsewhere."""
from __future__ import annotations

from channels_redis.pubsub import RedisPubSubLoopLayer, RedisSingleShardConnection
from django.conf import settings

from patches import channels_redis_pubsub as pubsub
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


async def test_channels_redis_pubsub__outside_the_tested_channels_redis_the_stock_layer_runs(installed,
                                                                                             caplog) -> None:
    installed(channels_redis="5.0.0")
    layer = pubsub.ResyncingPubSubChannelLayer(hosts=[settings.REDIS_CHANNELS_URL])
    loop_layer = await _loop_layer_of(layer)
    assert not isinstance(layer._serializer, pubsub._DecodeOnceSerializerProxy)
    assert type(loop_layer) is RedisPubSubLoopLayer
    assert all(type(shard) is RedisSingleShardConnection for shard in loop_layer._shards)
    assert "channels-redis 5.0.0 is outside" in caplog.text
