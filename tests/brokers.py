"""RabbitMQ for tests: a vhost of the test run's own (created and deleted by the test), and switching this
process's Celery app to it (the worker processes get it as CELERY_BROKER_URL through tests/processes.py).

TEST_BROKER=amqp runs a whole test session on RabbitMQ: tests/conftest.py gives the session a vhost of its
own (`broker_vhost`); `make test` does that for tests/e2e after the main run (devtools/testrun.py).

The vhost is made with `rabbitmqctl` when this machine can run it (root, or the Erlang cookie's owner), else
with the management HTTP API (RABBITMQ_MANAGEMENT_URL, default http://guest:guest@127.0.0.1:15672).
RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672) names the server and the user given the vhost.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import quote, urlsplit

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")


def broker_under_test() -> str:
    """The broker this test session runs its jobs through: TEST_BROKER, "redis" (default) or "amqp"."""
    value = os.environ.get("TEST_BROKER", "").strip().lower() or "redis"
    if value not in ("redis", "amqp"):
        raise ValueError(f"TEST_BROKER must be redis or amqp, not {value!r}")
    return value


def redis_broker_only(reason: str):
    """Skip a test under TEST_BROKER=amqp: it exercises the Redis transport itself (say why in `reason`)."""
    import pytest

    return pytest.mark.skipif(broker_under_test() == "amqp", reason=f"Redis broker transport only: {reason}")


def rabbitmq_reachable() -> bool:
    parts = urlsplit(RABBITMQ_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


def _user() -> str:
    return urlsplit(RABBITMQ_URL).username or "guest"


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess | None:
    """Run rabbitmqctl; None when it is not installed or cannot talk to the node (no cookie access)."""
    if shutil.which("rabbitmqctl") is None:
        return None
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    return result if result.returncode == 0 else None


def _management(method: str, path: str, body: dict | None = None) -> object:
    parts = urlsplit(MANAGEMENT_URL)
    request = urllib.request.Request(f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}/api/{path}",
                                     method=method, data=json.dumps(body).encode() if body is not None else None)
    token = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        data = response.read()
    return json.loads(data) if data else None


def create_vhost(name: str) -> None:
    if _rabbitmqctl("add_vhost", name) is not None:
        if _rabbitmqctl("set_permissions", "-p", name, _user(), ".*", ".*", ".*") is None:
            raise RuntimeError(f"rabbitmqctl could not give {_user()} the vhost {name}")
        return
    try:
        _management("PUT", f"vhosts/{quote(name, safe='')}", {})
        _management("PUT", f"permissions/{quote(name, safe='')}/{quote(_user(), safe='')}",
                    {"configure": ".*", "write": ".*", "read": ".*"})
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError("cannot create a RabbitMQ vhost: rabbitmqctl is unusable here and the management "
                           f"API ({MANAGEMENT_URL}) answered {exc}; run as root or enable rabbitmq_management"
                           ) from exc


def delete_vhost(name: str) -> None:
    if _rabbitmqctl("delete_vhost", name) is not None:
        return
    try:
        _management("DELETE", f"vhosts/{quote(name, safe='')}")
    except (urllib.error.URLError, OSError):
        pass  # best effort, like the other clean-ups


def queue_types(vhost: str) -> dict[str, str]:
    """{queue name: type} as the broker reports it ("quorum", "classic", ...)."""
    result = _rabbitmqctl("list_queues", "-p", vhost, "--formatter", "json", "name", "type")
    if result is not None:
        return {row["name"]: row["type"] for row in json.loads(result.stdout or "[]")}
    rows = _management("GET", f"queues/{quote(vhost, safe='')}")
    return {row["name"]: row["type"] for row in rows}  # type: ignore[union-attr]


def queue_counts(vhost: str) -> dict[str, tuple[int, int]]:
    """{queue name: (messages ready, messages unacknowledged)} as the broker reports them."""
    result = _rabbitmqctl("list_queues", "-p", vhost, "--formatter", "json", "name", "messages_ready",
                          "messages_unacknowledged")
    if result is not None:
        rows = json.loads(result.stdout or "[]")
    else:
        rows = _management("GET", f"queues/{quote(vhost, safe='')}")
    return {row["name"]: (int(row.get("messages_ready") or 0), int(row.get("messages_unacknowledged") or 0))
            for row in rows}  # type: ignore[union-attr]


def close_connections(vhost: str) -> int:
    """Close every client connection to the vhost, as a network cut or a node restart would; how many."""
    result = _rabbitmqctl("list_connections", "--formatter", "json", "vhost", "name")
    if result is not None:
        count = sum(1 for row in json.loads(result.stdout or "[]") if row["vhost"] == vhost)
        if _rabbitmqctl("close_all_connections", "--vhost", vhost, "--limit", "1000", "test: connection cut") is None:
            raise RuntimeError(f"rabbitmqctl could not close the connections of {vhost}")
        return count
    rows = [row for row in _management("GET", "connections") if row["vhost"] == vhost]  # type: ignore[union-attr]
    for row in rows:
        _management("DELETE", f"connections/{quote(row['name'], safe='')}")
    return len(rows)


def close_process_connections(vhost: str, pids: set[int]) -> int:
    """Close the vhost's connections opened by these processes (matched by their local TCP port), as a
    network cut of one machine would; how many. Uses rabbitmqctl (this machine's node)."""
    import psutil

    ports = {conn.laddr.port for pid in pids for conn in psutil.Process(pid).net_connections(kind="tcp")
             if conn.raddr and conn.raddr.port == (urlsplit(RABBITMQ_URL).port or 5672)}
    # Tab-separated: the JSON formatter prints pids in a form close_connection does not accept.
    result = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "peer_port", "vhost")
    if result is None:
        raise RuntimeError("rabbitmqctl cannot list connections here")
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.count("\t") == 2]
    erlang_pids = [pid for pid, port, name in rows if name == vhost and int(port) in ports]
    for erlang_pid in erlang_pids:
        if _rabbitmqctl("close_connection", erlang_pid, "test: connection cut") is None:
            raise RuntimeError(f"rabbitmqctl could not close connection {erlang_pid}")
    return len(erlang_pids)


def reset_celery_connections() -> None:
    """Drop this process's cached broker connections (after the broker closed them)."""
    from config.celery import app

    _drop_cached_connections(app)


def broker_url(vhost: str) -> str:
    return f"{RABBITMQ_URL.rstrip('/')}/{quote(vhost, safe='')}"


def switch_celery_broker(url: str, options: dict[str, object]) -> dict[str, object]:
    """Point this process's Celery app at another broker (as settings.py would configure it for `url`);
    returns what to pass back to restore it. Cached connections, producers and queues are dropped."""
    from config.celery import app

    saved = {name: app.conf[name] for name in ("broker_url", *options)}
    app.conf.update(broker_url=url, **options)
    _drop_cached_connections(app)
    return saved


def _drop_cached_connections(app) -> None:
    from kombu import pools

    # kombu keeps its connection and producer pools in process-wide groups keyed by the broker's address:
    # close and forget them all (closing only the app's pool would leave a closed pool registered there,
    # and the next publish to the same broker would get "Acquire on closed pool").
    pools.reset()
    app._pool = None
    for name in ("amqp", "control", "events"):  # cached per broker: rebuilt from app.conf on next use
        app.__dict__.pop(name, None)


@contextmanager
def rabbitmq_vhost_broker() -> Iterator[tuple[str, str]]:
    """A fresh vhost, this process's Celery app on it with the RabbitMQ options of config/amqp.py, and
    tests/processes.py passing it to the processes it starts; everything undone afterwards. Yields
    (vhost, broker URL)."""
    from django.conf import settings

    from config import amqp

    vhost = f"test-{os.environ.get('TEST_RUN_ID', 'adhoc')}-{uuid.uuid4().hex[:6]}"
    create_vhost(vhost)
    url = broker_url(vhost)
    saved = switch_celery_broker(url, amqp.celery_options(settings.JOB_QUEUES, write_timeout_s=5.0))
    try:
        yield vhost, url
    finally:
        switch_celery_broker(str(saved.pop("broker_url")), saved)
        delete_vhost(vhost)
