"""An admission pass on PostgreSQL in two round trips: what jobs/admission.py's portable pass does a query at
a time (a dozen round trips, each one a wait for the server and, on a loaded machine, for the scheduler).

1. `BEGIN; SELECT pg_try_advisory_xact_lock(…)` (or the blocking lock), then the slots held, the waiting
   jobs and the fair-share tags of their owners: one string of statements (psycopg's client-side binding
   cursor sends it at once and returns each statement's rows). Each statement reads a snapshot taken when it
   starts, after the lock was granted, so the counts are as exact as the portable pass's.
2. The admissions (`UPDATE … RETURNING`: a job a cancel has locked is waited for, then left out by its new
   status), the tags' upsert and `COMMIT`, again at once.

The transaction is opened by the SQL itself, outside Django's atomic blocks (the caller checks there is no
outer one), and rolled back here on any error, so the connection never stays inside it.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import CharField, Count, Q, Value
from django.db.models.functions import Cast, Concat

from .models import FairShareTag, GenerationJob


def usable() -> bool:
    """PostgreSQL, not inside a transaction of the caller (its COMMIT would end the caller's)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block and connection.get_autocommit()


def _sql(queryset: Any) -> tuple[str, list[Any]]:
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


def _results(cursor: Any) -> list[list[tuple] | None]:
    """Every statement's rows (None for one that returns none), in order."""
    out = []
    while True:
        out.append(cursor.fetchall() if cursor.description is not None else None)
        if not cursor.nextset():
            return out


def reads(*, holding: Any, waiting: Any, waiting_rows: Any, user_prefix: str, clock: str) -> tuple[str, list[Any]]:
    """The three reads as one string of statements (held rows, waiting rows, the tags of the clock and of the
    waiting jobs' owners). They never change: the caller compiles them once per process (compiling the
    querysets was a fifth of a pass's time in a worker's profile)."""
    held_sql, held_params = _sql(holding.order_by().values_list("queue", "project__owner_id")
                                 .annotate(n=Count("pk")).values_list("queue", "project__owner_id", "n"))
    wait_sql, wait_params = _sql(waiting_rows)
    owners = waiting.order_by().annotate(
        tag_key=Concat(Value(user_prefix), Cast("project__owner_id", CharField()))).values("tag_key")
    tags_sql, tags_params = _sql(FairShareTag.objects.filter(Q(key=clock) | Q(key__in=owners)).values_list("key", "tag"))
    return "; ".join((held_sql, wait_sql, tags_sql)), [*held_params, *wait_params, *tags_params]


def read_locked(*, lock_key: int, wait: bool, reads: tuple[str, list[Any]]
                ) -> tuple[bool, list[tuple], list[tuple], dict[str, float]]:
    """Open the transaction, take the lock, run `reads` (see `reads`). False: the lock is another's (the
    transaction is rolled back then)."""
    reads_sql, reads_params = reads
    take = "SELECT pg_advisory_xact_lock(%s), true" if wait else "SELECT pg_try_advisory_xact_lock(%s)"
    with connection.cursor() as cursor:
        try:
            cursor.execute("; ".join(("BEGIN", take, reads_sql)), [lock_key, *reads_params])
            _, locked, held, rows, tags = _results(cursor)
            if not locked[0][-1]:
                cursor.execute("ROLLBACK")
                return False, [], [], {}
        except BaseException:
            rollback()
            raise
    return True, held, rows, dict(tags)


def write_and_commit(chosen_pks: list[Any], now: datetime, tags: dict[str, float]) -> set[Any]:
    """Record the admissions and the tags, commit; the pks actually admitted (a cancelled job is not)."""
    quote = connection.ops.quote_name
    job = GenerationJob._meta
    tag = FairShareTag._meta
    statements, params = [], []
    if chosen_pks:
        pk, status, admitted_at, position = (quote(job.get_field(name).column)
                                             for name in ("id", "status", "admitted_at", "queue_position"))
        statements.append(
            f"UPDATE {quote(job.db_table)} SET {admitted_at} = %s, {position} = NULL "
            f"WHERE {pk} IN ({', '.join(['%s'] * len(chosen_pks))}) AND {status} = %s AND {admitted_at} IS NULL "
            f"RETURNING {pk}")
        params += [now, *chosen_pks, "queued"]
    if chosen_pks and tags:
        key, value = quote(tag.get_field("key").column), quote(tag.get_field("tag").column)
        statements.append(
            f"INSERT INTO {quote(tag.db_table)} ({key}, {value}) VALUES {', '.join(['(%s, %s)'] * len(tags))} "
            f"ON CONFLICT ({key}) DO UPDATE SET {value} = EXCLUDED.{value}")
        params += [item for pair in tags.items() for item in pair]
    statements.append("COMMIT")
    with connection.cursor() as cursor:
        try:
            cursor.execute("; ".join(statements), params)
            results = _results(cursor)
        except BaseException:
            rollback()
            raise
    return {row[0] for row in results[0]} if chosen_pks else set()


def rollback() -> None:
    """End the pass's transaction after an error (a broken connection is Django's to replace)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the connection is gone: its transaction went with it
        pass


def held_maps(rows: list[tuple]) -> tuple[dict[str, int], dict[int, int]]:
    by_queue: dict[str, int] = defaultdict(int)
    by_user: dict[int, int] = defaultdict(int)
    for queue, owner_id, n in rows:
        by_queue[queue] += n
        by_user[owner_id] += n
    return by_queue, by_user
