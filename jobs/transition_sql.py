"""A worker's transition of its job (started, completed) on PostgreSQL in two round trips instead of five.

`jobs.services.transitions._transition` in Django's atomic block is BEGIN, the row lock (SELECT … FOR
UPDATE), the job's UPDATE, the event's INSERT and COMMIT: five waits for the server, ten for a no-op job's
start and completion, each a wait for the scheduler too on a loaded machine (bench/throughput.py's worker
profile: the database round trips were most of a tracked job's time). Here the same statements, compiled by
Django from the same model code, travel as:

1. `BEGIN; SELECT … FOR UPDATE` (the row, read after the lock is granted);
2. the job's `UPDATE`, the event's `INSERT` and `COMMIT`;

with the same decision in between (jobs/services/transitions.py: stale attempt, state table, the fields of the
new status, the event and its on-commit hooks, which run here once COMMIT returned). Like jobs/admission_sql.py
the transaction is opened by the SQL itself outside Django's atomic blocks (`usable` checks there is no outer
one) and rolled back here on any error, so the connection never stays inside it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from django.db import connection
from django.db.models.sql import InsertQuery, UpdateQuery

from .admission_sql import rollback
from .exceptions import JobNotFound
from .models import GenerationJob, JobEvent
from .records import JOB_FIELDS_SAVED, job_uuid, next_event

Hook = Callable[[], None]


def usable() -> bool:
    """PostgreSQL, not inside a transaction of the caller (its COMMIT would end the caller's)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block and connection.get_autocommit()


@functools.cache
def _lock_query(alias: str) -> tuple[str, Any, list[str]]:
    """`lock_job`'s SELECT … FOR UPDATE compiled once per process (its one parameter is the pk), its compiler
    (for the columns' converters) and the attribute each column fills."""
    # Compiled without select_for_update(), which Django refuses to compile in autocommit: the BEGIN is ours.
    compiler = GenerationJob.objects.filter(pk=job_uuid("00000000-0000-0000-0000-000000000000")).query.get_compiler(alias)
    sql, params = compiler.as_sql()
    assert len(params) == 1, params  # only the pk: the cached text takes any job's
    start, end = compiler.klass_info["select_fields"][0], compiler.klass_info["select_fields"][-1] + 1
    return f"{sql} FOR UPDATE", compiler, [column[0].target.attname for column in compiler.select[start:end]]


def lock(job_id: Any) -> GenerationJob:
    """BEGIN and the job's row lock, one round trip; JobNotFound (rolled back) when there is no such job."""
    sql, compiler, attnames = _lock_query(connection.alias)
    pk = job_uuid(job_id)
    with connection.cursor() as cursor:
        try:
            cursor.execute(f"BEGIN; {sql}", [pk])
            cursor.nextset()  # past BEGIN's empty result
            rows = cursor.fetchall()
        except BaseException:
            rollback()
            raise
    if not rows:
        rollback()  # JobNotFound is the caller's to pass on, with nothing left open
        raise JobNotFound(job_id)
    (row,) = compiler.results_iter(results=[rows])
    return GenerationJob.from_db(connection.alias, attnames, row)


def _update_sql(job: GenerationJob) -> tuple[str, list[Any]]:
    """`job.save(update_fields=JOB_FIELDS_SAVED)`'s UPDATE (auto_now fields set as save sets them)."""
    fields = [GenerationJob._meta.get_field(name) for name in JOB_FIELDS_SAVED]
    query = GenerationJob._base_manager.filter(pk=job.pk).query.chain(UpdateQuery)
    query.add_update_fields([(field, None, field.pre_save(job, False)) for field in fields])
    sql, params = query.get_compiler(connection.alias).as_sql()
    return sql, list(params)


def _insert_sql(event: JobEvent) -> tuple[str, list[Any]]:
    """`event.save(force_insert=True)`'s INSERT (its id is not read back: nothing uses it)."""
    fields = [field for field in JobEvent._meta.concrete_fields if not field.primary_key]
    query = InsertQuery(JobEvent)
    query.insert_values(fields, [event])
    ((sql, params),) = query.get_compiler(connection.alias).as_sql()
    return sql, list(params)


def record_and_commit(job: GenerationJob, *, kind: str, previous_status: str | None, message: str = "") -> list[Hook]:
    """`records.record_event` and the commit, one round trip; returns the event's on-commit hooks for the
    caller to run. On an error the caller rolls back (it holds the transaction `lock` opened)."""
    event, hooks = next_event(job, kind=kind, previous_status=previous_status, message=message)
    (update, update_params), (insert, insert_params) = _update_sql(job), _insert_sql(event)
    with connection.cursor() as cursor:
        cursor.execute(f"{update}; {insert}; COMMIT", [*update_params, *insert_params])
    return hooks
