"""Celery's result backend: django-celery-results' table, each store one statement, and storing again over a new
connection once its own was lost.

The worker's main process stores results too (an expired task it discards, a revoke, a time limit) and,
having no request cycle, never drops a dead connection: after PostgreSQL ended it, the next such store
raised in the consumer and stopped the worker. Celery's retry policy (CELERY_RESULT_BACKEND_ALWAYS_RETRY)
asks the backend which errors are safe to retry; django-celery-results answers only psycopg2's
InterfaceError, while psycopg 3 reports a closed connection as an OperationalError.

A task stores twice (STARTED, CELERY_TASK_TRACK_STARTED, then its outcome). django-celery-results' manager does
each with `get_or_create` and `save`: a SELECT, then BEGIN, INSERT and COMMIT (or an UPDATE): six round trips
per task, half of a tracked no-op job's database time in bench/throughput.py's worker profile. Here each store
is one `INSERT … ON CONFLICT (task_id) DO UPDATE` of the same fields (the row's `date_created` kept, `date_done`
set as `auto_now` did), in autocommit (or in the caller's transaction if there is one).
"""
from __future__ import annotations

from typing import Any

from celery import states
from django.db import connections, router
from django.db.models import Model
from django.db.models.constants import OnConflict
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend as _DatabaseBackend


def store_row(model: type[Model], task_id: str, fields: dict[str, Any], using: str | None) -> None:
    """What TaskResultManager.store_result does (create the row with `fields`, or set them on the existing one;
    `date_done` is auto_now, `date_created` auto_now_add and kept) as one upsert; the stock manager where the
    database cannot say ON CONFLICT … DO UPDATE."""
    using = using or router.db_for_write(model)
    if not connections[using].features.supports_update_conflicts_with_target:
        model._default_manager.store_result(task_id=task_id, using=using, **fields)
        return
    opts = model._meta
    row = model(task_id=task_id, **fields)
    inserted = [f for f in opts.concrete_fields if not f.primary_key]
    updated = [opts.get_field(name) for name in (*fields, "date_done")]
    model._default_manager.db_manager(using)._insert(
        [row], fields=inserted, using=using, on_conflict=OnConflict.UPDATE, update_fields=updated,
        unique_fields=[opts.get_field("task_id")])


class DatabaseBackend(_DatabaseBackend):
    """django-celery-results' DatabaseBackend storing in one statement, retrying one whose connection is gone."""

    def _store_result(self, task_id: str, result: Any, status: str, traceback: Any = None, request: Any = None,
                      using: str | None = None) -> Any:
        """The stock `_store_result` (the same fields, encoded the same way) with `store_row` for the manager's
        `store_result`."""
        content_type, content_encoding, result = self.encode_content(result)
        _, _, encoded_meta = self.encode_content({**self._get_meta_from_request(request),
                                                  "children": self.current_task_children(request)})
        fields = {"content_encoding": content_encoding, "content_type": content_type, "meta": encoded_meta,
                  "result": result, "status": status, "traceback": traceback,
                  **self._get_extended_properties(request, traceback)}
        if status == states.STARTED:
            fields["date_started"] = timezone.now()
        store_row(self.TaskModel, task_id, fields, using)
        return result

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
