"""GET /healthz against the real database, Redis and RabbitMQ, and with each of them unreachable."""
from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from config.redis_roles import RedisRole
from devtools.embedded_redis import free_port
from ops import health_checks as health
from tests import brokers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_worker_count():
    health.reset_workers_cache()
    yield
    health.reset_workers_cache()


def test_healthz__200_when_database_and_redis_answer(client, settings):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2}

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["redis"] == "ok" and body["status"] == "ok"
    assert body["broker"] == "ok" and body["broker_error"] is None
    assert body["redis_roles"] == {"broker": "ok", "channels": "ok", "locks": "ok"}
    assert body["workers"] == 0  # no worker runs in this test (a real one is counted in the e2e test)
    assert body["down"] == []


def test_healthz__503_naming_redis_when_it_is_down(client, settings, broker_at):
    settings.REDIS_ROLES = replace(settings.REDIS_ROLES, broker=RedisRole("broker", 0, "redis://127.0.0.1:1/0"))
    broker_at("redis://127.0.0.1:1/0")  # a Redis broker, also in a TEST_BROKER=amqp session

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == "down" and body["down"] == ["redis", "broker"] and body["database"] == "ok"
    assert body["redis_roles"] == {"broker": "down", "channels": "ok", "locks": "ok"}
    assert body["broker"] == "down" and body["broker_type"] == "redis" and "PING" in body["broker_error"]
    assert body["workers"] is None  # not asked through a broker that is down


def test_healthz__503_when_the_channel_layers_redis_alone_is_down(client, settings):
    # Each Redis role is checked, not only the broker's (CHANNEL_LAYER_REDIS_URL may be another server)
    settings.REDIS_ROLES = replace(settings.REDIS_ROLES, channels=RedisRole("channels", 1, "redis://127.0.0.1:1/1"))

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]
    assert response.json()["redis_roles"]["channels"] == "down" and response.json()["broker"] == "ok"


def test_healthz__503_when_fewer_workers_than_required(client, settings):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2, "MIN_WORKERS": 1}

    response = client.get("/healthz/")

    assert response.status_code == 503
    assert response.json()["down"] == ["workers"]


def test_healthz__needs_no_auth_and_ignores_bad_tokens(client, settings):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2}

    assert client.get("/healthz", HTTP_AUTHORIZATION="Token nonsense").status_code == 200


requires_rabbitmq = pytest.mark.skipif(not brokers.rabbitmq_reachable(), reason="no RabbitMQ on this machine")


@pytest.fixture
def amqp_broker():
    """This process's Celery app on a RabbitMQ vhost of the test's own (tests/brokers.py)."""
    with brokers.rabbitmq_vhost_broker() as (vhost, url):
        yield url


@pytest.fixture
def broker_at():
    """Point this process's Celery app at any broker URL for the test; restored afterwards."""
    saved: list[dict] = []

    def switch(url: str) -> None:
        saved.append(brokers.switch_celery_broker(url, {}))

    yield switch
    for previous in reversed(saved):
        brokers.switch_celery_broker(str(previous.pop("broker_url")), previous)


@requires_rabbitmq
def test_healthz__connects_to_a_rabbitmq_broker(client, settings, amqp_broker):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2}

    response = client.get("/healthz")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["broker"] == "ok" and body["broker_type"] == "rabbitmq" and body["broker_error"] is None
    assert body["workers"] == 0  # the broadcast ping went through RabbitMQ; no worker listens on this vhost


@requires_rabbitmq
def test_healthz__503_naming_the_rabbitmq_broker_when_the_vhost_refuses(client, broker_at):
    broker_at(brokers.broker_url("no-such-vhost-healthz"))

    body = client.get("/healthz").json()

    assert body["down"] == ["broker"] and body["broker"] == "down"
    assert "vhost" in body["broker_error"].lower() or "access" in body["broker_error"].lower(), body


def test_healthz__503_naming_the_rabbitmq_broker_when_nothing_listens(client, broker_at):
    port = free_port()
    broker_at(f"amqp://guest:guest@127.0.0.1:{port}//")

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"] and body["broker_type"] == "rabbitmq" and body["workers"] is None
    assert "refused" in body["broker_error"].lower(), body
    assert body["redis"] == "ok" and body["database"] == "ok"  # the others are still reported on their own


def test_healthz__answers_when_a_rabbitmq_node_accepts_but_never_speaks(client, settings, broker_at):
    # A hung node (or a port that is not RabbitMQ) accepts the TCP connection and then says nothing: the AMQP
    # handshake is bounded by HEALTHZ_BROKER_TIMEOUT_S, so the probe answers 503 instead of hanging.
    settings.HEALTHZ = {**settings.HEALTHZ, "BROKER_TIMEOUT_S": 0.5}
    with socket.create_server(("127.0.0.1", 0)) as silent:
        broker_at(f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}//")

        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]


@requires_rabbitmq
def test_healthz__a_failover_list_is_up_while_one_node_answers(client, settings, amqp_broker, broker_at):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2}
    vhost = amqp_broker.rsplit("/", 1)[1]
    broker_at(f"amqp://guest:guest@127.0.0.1:{free_port()}/{vhost};{amqp_broker}")

    body = client.get("/healthz").json()

    assert body["broker"] == "ok" and body["down"] == [], body
