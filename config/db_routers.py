"""The read replica (DATABASE_REPLICA_URL): only the reads that tolerate replication lag go there.

A replica is seconds behind at worst, so it serves what a person browses: the API's job and project lists,
the admin's change lists and the /metrics job counts. Everything else reads the primary, above all what a
watching client builds on (the job snapshot, `resume` and the consumers' gap-fill from JobEvent, the events
and SSE endpoints): a stale read there would show a status older than a push the client already has.

The lists opt in with `replica_reads()` (the views' mixins: ops/replica.py); the router sends a read to the
replica only inside it and only when a replica is configured, and every write (and every read outside) to
the primary. Without DATABASE_REPLICA_URL there is no `replica` alias and everything is as before.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connections

PRIMARY, REPLICA = "default", "replica"

_replica_reads: ContextVar[bool] = ContextVar("replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextmanager
def _reads_from(replica: bool) -> Iterator[None]:
    token = _replica_reads.set(replica)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def replica_reads() -> contextlib.AbstractContextManager[None]:
    """Reads inside go to the replica, if there is one (a context variable: per request, thread and task)."""
    return _reads_from(True)


def primary_reads() -> contextlib.AbstractContextManager[None]:
    """Reads inside go to the primary even within `replica_reads()` (a check that must not see lag)."""
    return _reads_from(False)


class ReplicaRouter:
    """settings.DATABASE_ROUTERS: replica for reads inside `replica_reads()`, the primary for the rest."""

    def db_for_read(self, model, **hints) -> str:
        return REPLICA if _replica_reads.get() and replica_configured() else PRIMARY

    def db_for_write(self, model, **hints) -> str:
        # Explicitly the primary: Django would otherwise write an object back where it was read from.
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # one database, two ways in

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == PRIMARY  # the replica follows the primary's schema by replication

