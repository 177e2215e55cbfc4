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
