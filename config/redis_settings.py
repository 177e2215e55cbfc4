"""The settings that live on Redis besides the broker (config/celery_settings.py): channels' CHANNEL_LAYERS
on the channel layer's role and Django's CACHES on the locks' role (config/redis_roles.py says where each
role lives)."""
from __future__ import annotations

from typing import Any

from . import redis_roles
from .env import env_int, env_str


def channel_layers(role: redis_roles.RedisRole, *, key_prefix: str) -> dict[str, Any]:
    """CHANNEL_LAYERS (figures: bench/ws_fanout.py, docs/jobsocket.md).

    RedisPubSubChannelLayer is the default: each daphne process subscribes once per group and fans out in
    memory, where RedisChannelLayer writes one Redis entry per watcher per message (bench/ws_fanout.py
    compares them; figures in docs/jobsocket.md). Both are at-most-once; clients recover via the
    snapshot and `resume`, and consumers refill seq gaps from JobEvent.
    A slow client cannot make others lose messages with either: pub/sub queues per consumer in the daphne
    process (the slow socket's own buffer grows), and the core layer's capacity is per consumer channel.
    """
    return {
        "default": {
            # The pub/sub layer that tells consumers to resync after a lost Redis connection (patches/).
            "BACKEND": env_str("CHANNEL_LAYER_BACKEND", "patches.channels_redis_pubsub.ResyncingPubSubChannelLayer"),
            "CONFIG": {
                "hosts": [redis_roles.channel_layer_host(role)],
                "prefix": f"{key_prefix}:asgi",
                # The rest applies to channels_redis.core.RedisChannelLayer only (pub/sub ignores it).
                # Messages buffered per consumer channel: a job pushes at most JOBS_PROGRESS_EVENTS_PER_S
                # (10) a second, and a project stream a few jobs' worth; 1,000 is well over a minute of a
                # stalled client. Past it that one client misses pushes and its consumer refills the gap
                # from JobEvent on the next message.
                "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000),
                # A message nobody read within 60 s is stale (the client reconnects and resumes by seq).
                "expiry": env_int("CHANNEL_LAYER_EXPIRY", 60),
                # Group membership of a consumer whose process died without leaving: one day.
                "group_expiry": env_int("CHANNEL_LAYER_GROUP_EXPIRY", 86400),
            },
        }
    }


def caches(role: redis_roles.RedisRole, *, key_prefix: str) -> dict[str, Any]:
    """CACHES: throttle counters live in Redis (the locks' role) so every server process shares them."""
    location, sentinel_options = redis_roles.cache_location(role)
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": f"{key_prefix}:cache",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1, **sentinel_options},
        }
    }
