"""ops/result_backend.py: which failed result-backend operations Celery's retry policy may repeat."""
from __future__ import annotations

import pytest
from celery import current_app
from django.db import connection, transaction
from django.db.utils import OperationalError, ProgrammingError

from ops.result_backend import DatabaseBackend

pytestmark = pytest.mark.django_db(transaction=True)
# The connection-loss cases close the test database's connection: PostgreSQL reconnects, while the file SQLite
# of a plain `make test` is then closed for every later test of the run.
postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="closes the test connection")


def backend() -> DatabaseBackend:
    return DatabaseBackend(app=current_app)


def test_result_backend__settings__celery_uses_it_and_retries():
    # Given the configured Celery app / When its result backend is built / Then it is ours, with retries on
    assert isinstance(current_app.backend, DatabaseBackend)
    assert current_app.backend.always_retry and current_app.backend.max_retries >= 1


@postgresql_only
def test_result_backend__closed_connection__retried_over_a_new_one():
    # Given a connection that PostgreSQL (or anything) closed under Django
    connection.ensure_connection()
    connection.connection.close()
    # When the operation failed on it / Then it is safe to retry, and the retry connects anew
    assert backend().exception_safe_to_retry(OperationalError("the connection is closed"))
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@postgresql_only
def test_result_backend__working_connection__statement_error_not_retried():
    # Given a working connection / When an operation failed for its own reason / Then it is not repeated
    connection.ensure_connection()
    assert not backend().exception_safe_to_retry(OperationalError("deadlock detected"))
    assert not backend().exception_safe_to_retry(ProgrammingError("no such column"))
    assert connection.connection is not None


@postgresql_only
def test_result_backend__inside_a_transaction__not_retried():
    # Given a store inside the caller's transaction whose connection was closed
    with pytest.raises(OperationalError), transaction.atomic():  # its commit fails: the connection is gone
        connection.connection.close()
        # When it failed / Then it is not retried: closing would lose the caller's transaction silently
        assert not backend().exception_safe_to_retry(OperationalError("the connection is closed"))
        assert connection.connection is not None
    connection.close()


class _Request:
    """What the worker's tracer passes as a task's request (the fields CELERY_RESULT_EXTENDED stores)."""

    def __init__(self, task_id: str) -> None:
        self.id, self.task, self.hostname, self.argsrepr, self.kwargsrepr = task_id, "t.name", "w@h", "(1,)", "{}"
        self.children: list = []


def _stored(task_id: str) -> dict:
    from django_celery_results.models import TaskResult

    row = TaskResult.objects.filter(task_id=task_id).values().get()
    return {k: v for k, v in row.items() if k not in ("id", "task_id", "date_created", "date_started", "date_done")}


def test_result_backend__started_then_done__one_statement_each_and_the_row_the_stock_manager_leaves():
    import uuid

    from celery import states
    from django.test.utils import CaptureQueriesContext
    from django_celery_results.backends.database import DatabaseBackend as StockBackend
    from django_celery_results.models import TaskResult

    ours, stock = str(uuid.uuid4()), str(uuid.uuid4())
    # Given a task's STARTED store then its SUCCESS, through our backend and through the stock one
    with CaptureQueriesContext(connection) as queries:
        backend().store_result(ours, {"pid": 1}, states.STARTED, request=_Request(ours))
        started = TaskResult.objects.values_list("date_created", "date_started", "date_done").get(task_id=ours)
        backend().store_result(ours, {"ok": 1}, states.SUCCESS, request=_Request(ours))
    StockBackend(app=current_app).store_result(stock, {"pid": 1}, states.STARTED, request=_Request(stock))
    StockBackend(app=current_app).store_result(stock, {"ok": 1}, states.SUCCESS, request=_Request(stock))
    # Then each store was one statement (and the read between them)
    assert len(queries) == 3, [q["sql"] for q in queries.captured_queries]
    # And the row holds what the stock manager stores: the outcome, the request's fields, the start kept
    assert _stored(ours) == _stored(stock)
    assert _stored(ours)["status"] == states.SUCCESS and _stored(ours)["task_name"] == "t.name"
    created, date_started, done = TaskResult.objects.values_list("date_created", "date_started", "date_done").get(
        task_id=ours)
    assert (created, date_started) == started[:2] and done >= started[2]
    assert backend().get_task_meta(ours)["result"] == {"ok": 1}
