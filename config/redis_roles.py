"""Where each Redis role lives: the Celery broker, the channel layer, and the locks with the cache.

- `REDIS_URL` alone (the default, and `make run`'s embedded Redis): one server, one database number per
  role (broker = the URL's number, channel layer + 1, locks and cache + 2), as before.
- `CELERY_BROKER_URL`, `CHANNEL_LAYER_REDIS_URL`, `LOCKS_REDIS_URL` move one role to a server of its own
  (used as given, database number included). The broker may also be `amqp://` (no Redis role then).
- `REDIS_SENTINELS` (`host:port,host:port`) + `REDIS_SENTINEL_MASTER`: every role without a URL of its own
  lives on the master those sentinels name (databases 0, 1, 2) and follows a failover; `REDIS_URL` is not
  needed. A role URL of the form `sentinel://h1:p1/db;sentinel://h2:p2/db` (kombu's broker syntax) does the
  same for that role alone. `REDIS_SENTINEL_PASSWORD` authenticates to the sentinels and to the servers
  they name (one password for the whole set).

Pure configuration: settings.py turns these into Celery's, channels-redis's and the cache's settings, and
ops/redis_clients.py opens redis-py clients from them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from .env import InvalidSetting, env_str, redis_db_of, redis_url_with_db

BROKER, CHANNELS, LOCKS = "broker", "channels", "locks"
_ROLE_VARIABLES = {BROKER: "CELERY_BROKER_URL", CHANNELS: "CHANNEL_LAYER_REDIS_URL", LOCKS: "LOCKS_REDIS_URL"}
_DB_OFFSETS = {BROKER: 0, CHANNELS: 1, LOCKS: 2}
_DIRECT_SCHEMES = ("redis", "rediss", "unix")
# A sentinel that does not answer within this is skipped for the next one (redis-py asks them in turn).
SENTINEL_SOCKET_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class RedisRole:
    """One role's Redis: a direct URL, or a master found through sentinels."""

    name: str
    db: int
    url: str = ""  # direct: redis://host:port/db; through sentinels: redis://<master>/<db> (for logs only)
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    password: str | None = field(default=None, repr=False)  # sentinels and the servers they name

    @property
    def via_sentinel(self) -> bool:
        return bool(self.sentinels)

    def sentinel_kwargs(self) -> dict:
        """Connection options for the sentinels themselves (redis-py's `sentinel_kwargs`)."""
        options: dict = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT_S,
                         "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_S}
        if self.password:
            options["password"] = self.password
        return options

    def describe(self) -> str:
        """Where the role lives, without its password."""
        if self.via_sentinel:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel {self.master}@{hosts}/{self.db}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}:{parts.port or ''}{parts.path}"


def parse_sentinels(value: str, variable: str = "REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` -> ((host, port), ...); a malformed entry names the variable and the entry."""
    hosts = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidSetting(f"{variable} must be host:port entries separated by commas, got {entry!r}")
        hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise InvalidSetting(f"{variable} names no sentinel")
    return tuple(hosts)


def _sentinel_master(environ: Mapping[str, str] | None, why: str) -> str:
    master = env_str("REDIS_SENTINEL_MASTER", environ=environ)
    if not master:
        raise InvalidSetting(f"REDIS_SENTINEL_MASTER must be set with {why}")
    return master


def _from_sentinel_url(role: str, variable: str, value: str, environ: Mapping[str, str] | None) -> RedisRole:
    """kombu's `sentinel://[:password@]host:port[/db];sentinel://…` for one role."""
    hosts, db, password = [], 0, env_str("REDIS_SENTINEL_PASSWORD", environ=environ)
    for part in (p.strip() for p in value.split(";") if p.strip()):
        parts = urlsplit(part)
        if parts.scheme != "sentinel" or not parts.hostname:
            raise InvalidSetting(f"{variable}: every entry must be sentinel://host:port, got {part!r}")
        try:
            hosts.append((parts.hostname, parts.port or 26379))
        except ValueError:
            raise InvalidSetting(f"{variable}: bad port in {part!r}") from None
        db = redis_db_of(part) if parts.path.strip("/") else db
        password = unquote(parts.password) if parts.password else password
    master = _sentinel_master(environ, variable)
    return RedisRole(role, db, f"redis://{master}/{db}", tuple(hosts), master, password)


def _role(role: str, environ: Mapping[str, str] | None) -> RedisRole | None:
    """The role's Redis, or None when its URL is not Redis (an amqp:// broker)."""
    variable = _ROLE_VARIABLES[role]
    own = env_str(variable, environ=environ)
    if own:
        scheme = urlsplit(own).scheme
        if scheme == "sentinel":
            return _from_sentinel_url(role, variable, own, environ)
        if scheme in _DIRECT_SCHEMES:
            return RedisRole(role, redis_db_of(own), own)
        if role == BROKER:
            return None  # RabbitMQ and friends: not a Redis role
        raise InvalidSetting(f"{variable} must be a redis://, rediss:// or sentinel:// URL, got scheme {scheme!r}")
    db = _DB_OFFSETS[role]
    sentinels = env_str("REDIS_SENTINELS", environ=environ)
    if sentinels:
        master = _sentinel_master(environ, "REDIS_SENTINELS")
        return RedisRole(role, db, f"redis://{master}/{db}", parse_sentinels(sentinels), master,
                         env_str("REDIS_SENTINEL_PASSWORD", environ=environ))
    base = env_str("REDIS_URL", "redis://127.0.0.1:6379/0", environ=environ)
    return RedisRole(role, redis_db_of(base) + db, redis_url_with_db(base, redis_db_of(base) + db))


@dataclass(frozen=True)
class RedisRoles:
    broker: RedisRole | None
    channels: RedisRole
    locks: RedisRole

    def all(self) -> list[RedisRole]:
        return [role for role in (self.broker, self.channels, self.locks) if role is not None]


def roles_from_env(environ: Mapping[str, str] | None = None) -> RedisRoles:
    return RedisRoles(_role(BROKER, environ), _role(CHANNELS, environ), _role(LOCKS, environ))


# --- what each library wants ----------------------------------------------------------------------------

def celery_broker(role: RedisRole | None, raw_url: str | None) -> tuple[str, dict]:
    """(broker_url, the transport options it needs): kombu's `sentinel://…;…` with master_name for a sentinel
    role; the URL unchanged otherwise."""
    if role is None:
        return raw_url or "", {}
    if not role.via_sentinel:
        return role.url, {}
    auth = f":{quote(role.password, safe='')}@" if role.password else ""
    url = ";".join(f"sentinel://{auth}{host}:{port}/{role.db}" for host, port in role.sentinels)
    return url, {"master_name": role.master, "sentinel_kwargs": role.sentinel_kwargs()}


# The channel layer's connections: a server that accepts the connection but never answers the handshake
# (a hung or stopped process, a half-dead host) must not hold a reconnecting subscriber for good. Above the
# core layer's 5 s blocking pop; a pub/sub read passes its own short timeout.
CHANNEL_LAYER_SOCKET_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 10}


def channel_layer_host(role: RedisRole) -> dict:
    """One entry of channels-redis's `hosts`: the URL, or its sentinel dict (both layers accept either)."""
    if not role.via_sentinel:
        return {"address": role.url, **CHANNEL_LAYER_SOCKET_OPTIONS}
    host: dict = {"sentinels": list(role.sentinels), "master_name": role.master, "db": role.db,
                  "sentinel_kwargs": role.sentinel_kwargs(), **CHANNEL_LAYER_SOCKET_OPTIONS}
    if role.password:
        host["password"] = role.password
    return host


def cache_location(role: RedisRole) -> tuple[str, dict]:
    """(LOCATION, extra OPTIONS) for Django's RedisCache; a sentinel role gets a pool that asks the sentinels."""
    if not role.via_sentinel:
        return role.url, {}
    options: dict = {"pool_class": "ops.redis_clients.SentinelMasterPool", "sentinels": list(role.sentinels),
                     "service_name": role.master, "db": role.db, "sentinel_kwargs": role.sentinel_kwargs()}
    if role.password:
        options["password"] = role.password
    return f"redis://{role.master}/{role.db}", options
