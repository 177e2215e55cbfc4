"""jobs/transition_sql.py: a worker's start and completion of its job outside a transaction, two round trips each,
leaving the rows, events and hand-offs the atomic path leaves."""
from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs import listeners, services, states
from jobs.models import GenerationJob, JobEvent
from tests.factories import make_job

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(connection.vendor != "postgresql", reason="the two-round-trip path is PostgreSQL's")]

ROW = ("status", "seq", "progress", "current_stage", "result", "error_message", "worker", "celery_task_id", "attempts")
EVENT = ("seq", "kind", "status", "progress", "stage", "message", "attempt", "data")


def _row(job_id) -> tuple:
    return GenerationJob.objects.values_list(*ROW).get(pk=job_id)


def _events(job_id) -> list[tuple]:
    return list(JobEvent.objects.filter(job_id=job_id).order_by("seq").values_list(*EVENT))


def _start_and_complete(job_id, *, atomic: bool) -> list[listeners.CommittedEvent]:
    seen: list[listeners.CommittedEvent] = []
    listeners.register_listener(seen.append)
    try:
        for call in (lambda: services.job_start(job_id=job_id, worker="w@h", task_id="task-1", attempt=1),
                     lambda: services.job_complete(job_id=job_id, result={"artifacts": [], "n": 1}, attempt=1)):
            if atomic:
                with transaction.atomic():
                    assert call() is not None
            else:
                assert call() is not None
    finally:
        listeners.unregister_listener(seen.append)
    return seen


def test_worker_transitions__outside_a_transaction__two_round_trips_each_and_the_same_rows_as_the_atomic_path():
    # Given two queued jobs, one started and completed inside atomic blocks (the portable path)
    fast, portable = make_job(), make_job()
    portable_seen = _start_and_complete(portable.pk, atomic=True)
    # When the other is started and completed outside any transaction (a worker)
    with CaptureQueriesContext(connection) as queries:
        fast_seen = _start_and_complete(fast.pk, atomic=False)
    # Then each transition was the lock (with BEGIN) and the writes (with COMMIT)
    sql = [q["sql"] for q in queries.captured_queries if "jobs_generationjob" in q["sql"] and "FOR UPDATE" in q["sql"]
           or q["sql"].endswith("COMMIT")]
    assert len(sql) == 4, sql
    # And the row, its events and what the listeners were handed are the portable path's
    assert _row(fast.pk) == _row(portable.pk)
    assert _row(fast.pk)[:2] == (states.COMPLETED, 3)
    assert _events(fast.pk) == _events(portable.pk)
    strip = lambda events: [(e.seq, e.status, e.previous_status, e.result, e.attempt, e.message) for e in events]  # noqa: E731
    assert strip(fast_seen) == strip(portable_seen) and [e.status for e in fast_seen] == ["processing", "completed"]


def test_worker_transitions__late_or_stale_reports__no_change_and_the_connection_left_outside_a_transaction():
    # Given a job that completed
    job = make_job()
    _start_and_complete(job.pk, atomic=False)
    # When its start is replayed, and a completion of an older attempt arrives
    assert services.job_start(job_id=job.pk, worker="w@h", attempt=1) is None
    assert services.job_complete(job_id=job.pk, result={}, attempt=0) is None
    # Then nothing changed, and the connection is not left inside the refused transaction
    assert _row(job.pk)[:2] == (states.COMPLETED, 3)
    assert connection.connection.info.transaction_status == 0  # psycopg: IDLE, no transaction open


def test_worker_transitions__an_error_between_the_lock_and_the_commit__rolled_back_and_the_row_free(monkeypatch):
    # Given a queued job, and the event's record failing after the row lock was taken (as a soft time limit
    # raised at that line would)
    job = make_job()

    def fails(*args, **kwargs):
        raise RuntimeError("raised between BEGIN and COMMIT")

    monkeypatch.setattr("jobs.transition_sql.next_event", fails)
    # When a worker starts it
    with pytest.raises(RuntimeError):
        services.job_start(job_id=job.pk, worker="w@h", attempt=1)
    # Then the transaction was rolled back: the connection is outside it and the row is not locked
    assert connection.connection.info.transaction_status == 0  # psycopg: IDLE
    monkeypatch.undo()
    assert services.job_start(job_id=job.pk, worker="w@h", attempt=1) is not None
    assert _row(job.pk)[0] == states.PROCESSING


def test_a_pool_childs_next_task__a_session_left_inside_our_own_transaction_is_closed(monkeypatch):
    # Given a pool child that keeps its connection, left inside a BEGIN that no COMMIT or ROLLBACK ended
    from ops import celery_signals

    monkeypatch.setattr(celery_signals, "_pool_child_keeps_connections", True)
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
    left = connection.connection
    # When its next task starts
    celery_signals._check_db_connections()
    # Then that session was closed, and the next query runs on a new one outside any transaction
    assert left.closed
    assert GenerationJob.objects.count() >= 0
    assert connection.connection.info.transaction_status == 0
