"""A broker that accepts connections but never answers cannot hang a request: the job stays queued."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from celery import current_app as app
from rest_framework.test import APIClient

from jobs import states
from jobs.models import GenerationJob
from tests.factories import make_project
from tests.integration.api.conftest import token_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Each broker call in a request may wait BROKER_SOCKET_TIMEOUT_S (a few seconds) before giving up.
REQUEST_BOUND_S = 20


class StalledRedis:
    """Accepts TCP connections and reads whatever is sent, never answering (a Redis stuck in a fork or a swap storm)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    @staticmethod
    def _swallow(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def stalled_broker():
    stalled = StalledRedis()
    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app._pool = app.amqp._producer_pool = None
    app.conf.broker_url = f"redis://127.0.0.1:{stalled.port}/0"
    yield stalled
    app.conf.broker_url, app._pool, app.amqp._producer_pool = saved
    stalled.close()


def test_stalled_broker__create_and_cancel_answer_and_the_job_stays_queued(stalled_broker, user):
    # given an API client and a broker that never answers
    api: APIClient = token_client(user)
    project = make_project(owner=user)
    # when a job is created (dispatched on commit, inside the request)
    started = time.monotonic()
    response = api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation"}, format="json")
    created_in = time.monotonic() - started
    # then the request answers, and the job waits queued for the reaper
    assert response.status_code == 201 and created_in < REQUEST_BOUND_S, created_in
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.status == states.QUEUED and job.dispatched_at is None
    # and cancelling it (a revoke, inside the request) answers too
    started = time.monotonic()
    assert api.post(f"/api/jobs/{job.pk}/cancel/").status_code == 200
    assert time.monotonic() - started < REQUEST_BOUND_S
    assert stalled_broker.connections, "the broker was never contacted: the test proves nothing"
