"""realtime.publish.publish_job_update / apublish_job_update: recorded through the job service, then pushed."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from jobs.models import JobEvent
from realtime import events
from realtime.publish import apublish_job_update, publish_job_update
from tests.factories import make_job

from .conftest import Watcher

pytestmark = pytest.mark.django_db(transaction=True)


def recorded(job_id) -> list[tuple[int, str, float, str]]:
    return list(JobEvent.objects.filter(job_id=job_id).order_by("seq").values_list("seq", "status", "progress", "stage"))


async def test_apublish_job_update__watchers_receive_exactly_the_recorded_events(watcher: Watcher) -> None:
    # Given someone watching a queued job
    job = await database_sync_to_async(make_job)(owner=watcher.user)
    socket = watcher.token_socket(f"/ws/jobs/{job.pk}/")
    connected, _ = await socket.connect(timeout=5)
    assert connected and (await socket.receive_json_from(timeout=5))["seq"] == 1

    # When an update arrives through the awaitable helper, for a job that was never started
    returned = await apublish_job_update(job.pk, "processing", 40, "Generating images")

    # Then it was recorded (start, then progress) and the watcher got those events and nothing else
    pushed = [await socket.receive_json_from(timeout=5) for _ in range(2)]
    assert [(m["seq"], m["status"], m["progress"], m["current_stage"]) for m in pushed] == (
        await database_sync_to_async(recorded)(job.pk))[1:]
    assert returned == pushed[-1] and set(returned) == events.STATUS_KEYS
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


def test_publish_job_update__a_refused_update_records_and_pushes_nothing(captured_events) -> None:
    # Given a completed job
    job = make_job()
    publish_job_update(job.pk, "completed", None, None)
    before = recorded(job.pk)
    handed_on = len(captured_events)
    # When a late update arrives
    message = publish_job_update(job.pk, "processing", 50, "late")
    # Then nothing was recorded or pushed, and the caller sees the job as it is
    assert recorded(job.pk) == before and len(captured_events) == handed_on
    assert (message["status"], message["progress"], message["seq"]) == ("completed", 100.0, before[-1][0])
