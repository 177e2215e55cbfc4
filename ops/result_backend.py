"""Celery's result backend: django-celery-results' table, storing again over a new connection once its own was lost.

The worker's main process stores results too (an expired task it discards, a revoke, a time limit) and,
having no request cycle, never drops a dead connection: after PostgreSQL ended it, the next such store
raised in the consumer and stopped the worker. Celery's retry policy (CELERY_RESULT_BACKEND_ALWAYS_RETRY)
asks the backend which errors are safe to retry; django-celery-results answers only psycopg2's
InterfaceError, while psycopg 3 reports a closed connection as an OperationalError.
"""
from __future__ import annotations

from django.db import connections, router
from django.db.utils import InterfaceError, OperationalError
from django_celery_results.backends.database import DatabaseBackend as _DatabaseBackend


class DatabaseBackend(_DatabaseBackend):
    """django-celery-results' DatabaseBackend that retries an operation whose connection is gone."""

    def exception_safe_to_retry(self, exc: Exception) -> bool:
        """Retry (after closing the connection) when it no longer works; never inside a transaction."""
        if not isinstance(exc, (InterfaceError, OperationalError)):
            return False
        connection = connections[router.db_for_write(self.TaskModel)]
        if connection.in_atomic_block:  # the caller's transaction is lost with it: retrying would hide that
            return False
        if connection.connection is not None and connection.is_usable():
            return False  # the connection works: the error was the statement's own
        connection.close()
        return True
