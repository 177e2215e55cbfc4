"""A waiting job's place in line reaches its watchers: in the snapshot, and as a `queue` message each time
it moves (real channel layer and database; the admission pass runs as on a job's end)."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from jobs import capacity, leases, queue_positions, services
from realtime import events
from tests.factories import make_project

from .conftest import Watcher
from .test_consumers import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_slot(monkeypatch, settings):
    monkeypatch.setattr(queue_positions, "REFRESH_MIN_INTERVAL_S", 0)
    settings.JOBS = {**settings.JOBS, "ADMISSION_HEADROOM": 0}
    capacity.announce("w1@test", ["image_generation"], 1)
    yield
    leases.client().delete(capacity._key())


def three_jobs(owner):
    project = make_project(owner=owner)
    return [services.job_create(project=project, job_type="image_generation", params={}) for _ in range(3)]


async def test_queue_push__snapshot_has_the_position_and_each_move_is_pushed(watcher: Watcher) -> None:
    running, second, third = await database_sync_to_async(three_jobs)(watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{third.pk}/")
    project_socket = watcher.session_socket(f"/ws/projects/{third.project_id}/")
    snapshot = await open_socket(socket)
    await project_socket.connect(timeout=5)
    assert snapshot["queue_position"] == 2 and set(snapshot) == events.STATUS_KEYS
    for _ in range(3):  # the project stream's snapshots, newest first
        await project_socket.receive_json_from(timeout=5)

    await database_sync_to_async(services.job_cancel)(job_id=running.pk)  # a slot frees: `second` goes

    moved = await socket.receive_json_from(timeout=5)
    assert moved == {"type": "queue", "job_id": str(third.pk), "queue_position": 1, "starts_in_s": None}
    seen = [await project_socket.receive_json_from(timeout=5) for _ in range(2)]
    assert {"type": "queue", "job_id": str(third.pk), "queue_position": 1, "starts_in_s": None} in seen
    await socket.disconnect()
    await project_socket.disconnect()
