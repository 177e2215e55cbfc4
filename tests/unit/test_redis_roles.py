"""Where each Redis role lives (config/redis_roles.py): REDIS_URL, a URL per role, or Redis Sentinel."""
from __future__ import annotations

import pytest

from config import redis_roles
from config.env import InvalidSetting

SENTINELS = {"REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380", "REDIS_SENTINEL_MASTER": "jobs"}


def test_roles__one_redis_url_gives_each_role_its_database() -> None:
    roles = redis_roles.roles_from_env({"REDIS_URL": "redis://h:6379/4"})

    assert [(role.name, role.url) for role in roles.all()] == [
        ("broker", "redis://h:6379/4"), ("channels", "redis://h:6379/5"), ("locks", "redis://h:6379/6")]
    assert not any(role.via_sentinel for role in roles.all())


def test_roles__a_url_per_role_overrides_what_redis_url_gives() -> None:
    roles = redis_roles.roles_from_env({"REDIS_URL": "redis://h:6379/0", "CELERY_BROKER_URL": "redis://b:1/3",
                                        "CHANNEL_LAYER_REDIS_URL": "redis://c:2/0", "LOCKS_REDIS_URL": "redis://l:3"})

    assert (roles.broker.url, roles.channels.url, roles.locks.url) == ("redis://b:1/3", "redis://c:2/0", "redis://l:3")
    assert (roles.broker.db, roles.channels.db, roles.locks.db) == (3, 0, 0)


def test_roles__sentinels_serve_every_role_without_a_url_of_its_own() -> None:
    roles = redis_roles.roles_from_env({**SENTINELS, "LOCKS_REDIS_URL": "redis://l:3/7"})

    assert roles.broker.via_sentinel and roles.channels.via_sentinel and not roles.locks.via_sentinel
    assert roles.broker.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380)) and roles.broker.master == "jobs"
    assert (roles.broker.db, roles.channels.db, roles.locks.url) == (0, 1, "redis://l:3/7")


def test_celery_broker__kombu_sentinel_url_and_master_name() -> None:
    role = redis_roles.roles_from_env({**SENTINELS, "REDIS_SENTINEL_PASSWORD": "s3cr/t"}).broker

    url, options = redis_roles.celery_broker(role, None)

    assert url == "sentinel://:s3cr%2Ft@10.0.0.1:26379/0;sentinel://:s3cr%2Ft@10.0.0.2:26380/0"
    assert options["master_name"] == "jobs" and options["sentinel_kwargs"]["password"] == "s3cr/t"


def test_celery_broker__sentinel_url_given_as_celery_broker_url() -> None:
    env = {"REDIS_SENTINEL_MASTER": "jobs", "CELERY_BROKER_URL": "sentinel://a:1/2;sentinel://b:2/2"}
    role = redis_roles.roles_from_env(env).broker

    assert role.sentinels == (("a", 1), ("b", 2)) and role.db == 2
    assert redis_roles.celery_broker(role, env["CELERY_BROKER_URL"])[0] == "sentinel://a:1/2;sentinel://b:2/2"


def test_celery_broker__amqp_is_no_redis_role_and_passes_through() -> None:
    roles = redis_roles.roles_from_env({"CELERY_BROKER_URL": "amqp://guest:guest@mq:5672/jobs"})

    assert roles.broker is None and len(roles.all()) == 2
    assert redis_roles.celery_broker(None, "amqp://guest:guest@mq:5672/jobs") == ("amqp://guest:guest@mq:5672/jobs", {})


def test_channel_layer_host__channels_redis_sentinel_dict() -> None:
    role = redis_roles.roles_from_env({**SENTINELS, "REDIS_SENTINEL_PASSWORD": "pw"}).channels

    host = redis_roles.channel_layer_host(role)

    assert host["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)] and host["master_name"] == "jobs"
    assert host["db"] == 1 and host["password"] == "pw" and host["sentinel_kwargs"]["password"] == "pw"
    assert host["socket_timeout"] and host["socket_connect_timeout"]  # a hung server cannot hold a reconnect


def test_channel_layer_host__a_direct_url_with_socket_timeouts() -> None:
    host = redis_roles.channel_layer_host(redis_roles.roles_from_env({"REDIS_URL": "redis://h:1/0"}).channels)

    assert host["address"] == "redis://h:1/1" and host["socket_timeout"] and host["socket_connect_timeout"]


def test_cache_location__sentinel_pool_for_djangos_redis_cache() -> None:
    location, options = redis_roles.cache_location(redis_roles.roles_from_env(SENTINELS).locks)

    assert location == "redis://jobs/2"
    assert options["pool_class"] == "ops.redis_clients.SentinelMasterPool" and options["service_name"] == "jobs"


def test_roles__the_password_never_shows_in_a_repr_or_a_description() -> None:
    role = redis_roles.roles_from_env({**SENTINELS, "REDIS_SENTINEL_PASSWORD": "hunter2"}).locks
    direct = redis_roles.roles_from_env({"LOCKS_REDIS_URL": "redis://:hunter2@h:1/0"}).locks

    assert "hunter2" not in repr(role) + role.describe() + direct.describe()


@pytest.mark.parametrize(("env", "named"), [
    ({"REDIS_SENTINELS": "10.0.0.1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "h:notaport", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": " , ", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "h:1"}, "REDIS_SENTINEL_MASTER"),
    ({"CELERY_BROKER_URL": "sentinel://h:1"}, "REDIS_SENTINEL_MASTER"),
    ({"CHANNEL_LAYER_REDIS_URL": "amqp://mq"}, "CHANNEL_LAYER_REDIS_URL"),
    ({"LOCKS_REDIS_URL": "sentinel://h:1;redis://x:2", "REDIS_SENTINEL_MASTER": "m"}, "LOCKS_REDIS_URL"),
])
def test_roles__bad_settings_name_the_variable(env: dict, named: str) -> None:
    with pytest.raises(InvalidSetting, match=named):
        redis_roles.roles_from_env(env)
