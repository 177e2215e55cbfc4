"""Concurrent writers on one job: 8 progress reporters and a cancel never lose or duplicate a seq."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from jobs import services
from jobs.exceptions import InvalidTransition
from jobs.models import JobEvent
from tests.factories import make_processing_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_progress_from_8_threads_and_a_cancel__cancelled_and_gapless() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row-lock concurrency is proven on PostgreSQL (CI)")
    job = make_processing_job()
    barrier = threading.Barrier(9)
    errors: list[BaseException] = []

    def reporter(n: int) -> None:
        try:
            barrier.wait()
            for step in range(40):
                services.job_report_progress(job_id=job.pk, progress=step * 2 + n * 0.1, stage=f"worker {n} step {step}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def canceller() -> None:
        try:
            barrier.wait()
            services.job_report_progress(job_id=job.pk, progress=1, stage="before cancel")
            services.job_cancel(job_id=job.pk)
        except InvalidTransition as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reporter, args=(n,)) for n in range(8)] + [threading.Thread(target=canceller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    job.refresh_from_db()
    assert job.status == "cancelled"
    events = list(JobEvent.objects.filter(job=job).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) == list(range(1, job.seq + 1))
    cancel_index = next(i for i, e in enumerate(events) if e.status == "cancelled")
    assert cancel_index == len(events) - 1  # nothing recorded after the cancel
    progress = [e.progress for e in events]
    assert progress == sorted(progress)
