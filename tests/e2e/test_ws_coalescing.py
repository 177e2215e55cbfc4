"""Coalescing end to end: a stage reporting 10,000 progress steps records and pushes ~10 events a second."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from jobs.conf import job_settings
from jobs.models import JobEvent

from .test_ws_stream import TEST_TASKS, assert_consecutive, job_url, new_job, recorded, run_steps_task, shape, watch

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEPS = 10_000


def test_ws_coalescing__10000_progress_reports_become_at_most_10_events_a_second(processes) -> None:
    port = processes.start_daphne(wait=False)
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS, wait=False)
    processes.wait_ready()
    job, token = new_job()
    per_second = job_settings().PROGRESS_EVENTS_PER_S
    assert per_second == 10

    async def start() -> None:
        # 10,000 reports with a 0.3 ms pause each (the stand-in for work): a few seconds of reporting
        run_steps_task(job, steps=STEPS, pause_s=0.0003, last_progress=90.0)

    snapshot, messages = asyncio.run(watch(job_url(port, job, token), timeout=90, after_snapshot=start))

    progress_events = list(JobEvent.objects.filter(job=job, kind=JobEvent.PROGRESS).order_by("seq"))
    span = (progress_events[-1].created_at - progress_events[0].created_at).total_seconds()
    assert span >= 1.0, f"the reports must span a few seconds to test a rate (took {span:.2f} s)"
    # the first report goes out at once, then at most one per 1/per_second, plus the final flush
    assert len(progress_events) <= span * per_second + 2, (len(progress_events), span)
    assert len(progress_events) >= span * per_second / 2, "coalescing must not starve the stream"
    for event in progress_events:  # no one-second window holds more than ~10
        window = [e for e in progress_events if event.created_at <= e.created_at < event.created_at + timedelta(seconds=1)]
        assert len(window) <= per_second + 2, [e.seq for e in window]

    # the latest value is never lost: the last progress event carries the last report
    assert (progress_events[-1].progress, progress_events[-1].stage) == (90.0, f"Step {STEPS} of {STEPS}")
    # everything recorded was pushed, in order, seq without gaps, ending with the final status
    assert_consecutive(snapshot, messages)
    assert shape(messages) == recorded(job, after_seq=snapshot["seq"])
    assert messages[-2]["progress"] == 90.0 and messages[-2]["current_stage"] == f"Step {STEPS} of {STEPS}"
    assert (messages[-1]["status"], messages[-1]["progress"]) == ("completed", 100.0)
