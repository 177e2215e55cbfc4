"""realtime.publish from a thread without an event loop (as in Celery workers): a committed event is sent by
the calling thread when the publisher thread holds nothing, and through that thread when the direct send
fails, in the order the events were committed either way. Real channel layer (Redis), no mocks."""
from __future__ import annotations

import asyncio
import threading

import pytest
from channels.layers import get_channel_layer

from jobs import services
from realtime import events, publish
from tests.factories import make_processing_job

pytestmark = pytest.mark.django_db(transaction=True)


async def _listen(job_id: str) -> tuple[object, str]:
    """A consumer's channel in the job's group."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.job_group_name(job_id), channel)
    return layer, channel


async def _seqs(layer, channel: str, count: int) -> list[int]:
    return [(await asyncio.wait_for(layer.receive(channel), 5))["payload"]["seq"] for _ in range(count)]


async def _in_thread(fn, *args):
    """fn(*args) in a thread without an event loop (as a Celery worker reports), its connection closed after."""
    from django.db import connections

    def run():
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


def _report(job_id, reports: int) -> int:
    """`reports` progress reports from this (loop-less) thread; the job's seq after them."""
    from jobs.models import GenerationJob

    for n in range(1, reports + 1):
        assert services.job_report_progress(job_id=job_id, progress=10 * n, stage="s") is True
    return GenerationJob.objects.get(pk=job_id).seq


@pytest.fixture
def fresh_publisher(monkeypatch):
    monkeypatch.setattr(publish, "_direct_sender", None)
    monkeypatch.setattr(publish, "_send_lock", threading.Lock())


async def test_publish__a_sync_callers_committed_event_is_sent_by_its_own_thread(monkeypatch, fresh_publisher) -> None:
    job = await _in_thread(make_processing_job)
    layer, channel = await _listen(str(job.pk))
    handed_to_thread = []
    monkeypatch.setattr(publish, "_thread_sender_for_caller", lambda: handed_to_thread.append(1))
    seq = await _in_thread(_report, job.pk, 5)
    assert await _seqs(layer, channel, 5) == list(range(seq - 4, seq + 1))
    assert handed_to_thread == []  # every event left from the reporting thread


async def test_publish__a_failed_direct_send_goes_through_the_publisher_thread_in_order(monkeypatch,
                                                                                         fresh_publisher) -> None:
    job = await _in_thread(make_processing_job)
    layer, channel = await _listen(str(job.pk))
    direct = await _in_thread(publish._sender_for_caller, True)
    real_send, calls = direct.send_many, []

    def failing_once(sends):
        calls.append(len(sends))
        if len(calls) == 1:
            raise ConnectionError("Redis went away")
        return real_send(sends)

    monkeypatch.setattr(direct, "send_many", failing_once)
    seq = await _in_thread(_report, job.pk, 3)
    assert await _in_thread(publish.flush, 10)
    # The first direct send failed and paused the others: all three went through the thread, in order
    assert calls == [2] and direct.paused_until > 0
    assert await _seqs(layer, channel, 3) == list(range(seq - 2, seq + 1))
