"""redis-py clients for the Redis roles of config/redis_roles.py, direct or through Redis Sentinel.

A client of a sentinel role holds a SentinelConnectionPool: each new connection asks the sentinels for
the current master, and a connection that breaks (the master died) is replaced by one to whichever server
the sentinels name next, so a failover needs no restart. During the few seconds before the sentinels agree
on a new master, commands fail with ConnectionError (MasterNotFoundError) like with a Redis that is down.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from redis.sentinel import Sentinel, SentinelConnectionPool

from config.redis_roles import RedisRole


def client(role: RedisRole, **options: Any) -> redis.Redis:
    """A new client of the role's Redis (the caller closes it or keeps it)."""
    if not role.via_sentinel:
        return redis.Redis.from_url(role.url, **options)
    if role.password:
        options.setdefault("password", role.password)
    sentinel = Sentinel(list(role.sentinels), sentinel_kwargs=role.sentinel_kwargs(), **options)
    return sentinel.master_for(role.master, db=role.db)


@lru_cache(maxsize=8)
def _shared(role: RedisRole, decode_responses: bool) -> redis.Redis:
    return client(role, socket_connect_timeout=2, socket_timeout=5, decode_responses=decode_responses)


@lru_cache(maxsize=8)
def probe_client(role: RedisRole, timeout_s: float) -> redis.Redis:
    """The process's client for quick checks of a role's Redis (its pool is reused between probes, so a
    probe costs a round trip, not a connection); connect and reply each within `timeout_s`."""
    return client(role, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


def locks_client() -> redis.Redis:
    """The process's client of the locks' Redis (leases and locks; settings.REDIS_ROLES.locks), strings decoded."""
    return _shared(settings.REDIS_ROLES.locks, True)


class SentinelMasterPool(SentinelConnectionPool):
    """Django's RedisCache `pool_class` for a sentinel role: builds the pool from the cache's OPTIONS
    (config.redis_roles.cache_location puts `sentinels`, `service_name` and `sentinel_kwargs` there)."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SentinelMasterPool:  # noqa: ARG003 - the URL only names the master
        sentinels = options.pop("sentinels")
        service_name = options.pop("service_name")
        sentinel_kwargs = options.pop("sentinel_kwargs", None)
        return cls(service_name, Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs), **options)
