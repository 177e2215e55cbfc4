"""GET /healthz against the real database and Redis, and with Redis unreachable."""
from __future__ import annotations

import pytest

from ops import health_checks as health

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
    assert body["workers"] == 0  # no worker runs in this test (a real one is counted in the e2e test)
    assert body["down"] == []


def test_healthz__503_naming_redis_when_it_is_down(client, settings):
    settings.REDIS_BROKER_URL = "redis://127.0.0.1:1/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == "down" and body["down"] == ["redis"] and body["database"] == "ok"


def test_healthz__503_when_fewer_workers_than_required(client, settings):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2, "MIN_WORKERS": 1}

    response = client.get("/healthz/")

    assert response.status_code == 503
    assert response.json()["down"] == ["workers"]


def test_healthz__needs_no_auth_and_ignores_bad_tokens(client, settings):
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2}

    assert client.get("/healthz", HTTP_AUTHORIZATION="Token nonsense").status_code == 200
