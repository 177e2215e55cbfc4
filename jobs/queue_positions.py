"""`queue_position` of every waiting job (1 = starts next in its queue), kept in the job row and pushed to
watchers when it changes, with an estimate of when the job starts.

The order is the one admission (jobs/admission.py) follows: each user's waiting jobs in their own order
(priority, then age), and the users interleaved by their fair-share start tags, every job moving its
user's tag on by 1 / its weight. A user already at their running limit is not held back here, so for them
the position is a lower bound. Recomputed after admission passes, at most every REFRESH_MIN_INTERVAL_S
across processes.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Case, Value, When

from . import capacity, leases, states
from .admission import CLOCK, WEIGHTS, Waiting, load_tags, load_waiting, lock, user_key
from .models import GenerationJob

logger = logging.getLogger(__name__)

RECENT_RUNS = 20  # completed jobs of a type whose run times estimate the next one's
# Refreshes serialise among themselves, not with admission: a pass must never wait on (or be skipped for)
# a refresh; a position written for a job admitted meanwhile is refused by the conditional UPDATE.
_POSITIONS_LOCK = zlib.crc32(b"jobs.queue_positions")


def order(waiting: list[Waiting], tags: dict[str, float]) -> dict[str, list[Waiting]]:
    """{queue: its waiting jobs in admission order}."""
    per_user: dict[Any, list[Waiting]] = defaultdict(list)
    for job in waiting:
        per_user[job.owner_id].append(job)
    keyed = []
    for owner_id, jobs in per_user.items():
        tag = tags.get(user_key(owner_id), 0.0)
        start = max(tag, tags.get(CLOCK, 0.0))
        for job in sorted(jobs, key=lambda job: job.order):
            keyed.append(((start, tag, job.created_at, str(job.pk)), job))
            tag = start = start + 1.0 / WEIGHTS.get(job.priority, 2.0)
    queues: dict[str, list[Waiting]] = defaultdict(list)
    for _, job in sorted(keyed, key=lambda item: item[0]):
        queues[job.queue].append(job)
    return queues


def refresh() -> list[tuple[Waiting, int]]:
    """Store every waiting job's position; push the changed ones once committed. Returns those changed."""
    with transaction.atomic():
        lock(_POSITIONS_LOCK)
        waiting = load_waiting()
        tags = load_tags({job.owner_id for job in waiting})
        changed = []
        for jobs in order(waiting, tags).values():
            for position, job in enumerate(jobs, start=1):
                if job.queue_position != position:
                    changed.append((job, position))
        for start in range(0, len(changed), 500):  # one statement per 500 changed rows
            batch = changed[start:start + 500]
            # Conditional: a job cancelled since the read (cancels take no admission lock) keeps its null.
            GenerationJob.objects.filter(pk__in=[job.pk for job, _ in batch], status=states.QUEUED,
                                         admitted_at__isnull=True).update(queue_position=Case(
                *(When(pk=job.pk, then=Value(position)) for job, position in batch)))
    if changed:
        _push(changed)
    return changed


# A flood of one user shifts every waiting job's position at every admission; recomputing them more often
# than this (across all processes) only adds writes and pushes nobody can read that fast.
# 0.5 s (was 0.25): in a worker's profile of the throughput bench the refreshes (the whole backlog read, an
# UPDATE of every moved job, a push each) cost nearly as much as the admission passes themselves.
REFRESH_MIN_INTERVAL_S = 0.5


@dataclass
class _Refresher:
    """This process's refresh thread (a forked child starts its own: threads do not survive a fork)."""

    pid: int
    wake: threading.Event
    thread: threading.Thread


_refresher: _Refresher | None = None
_refresher_lock = threading.Lock()


def refresh_soon() -> None:
    """Have the positions recomputed off the caller's path: the admission pass that asks runs in a request
    or in a pool process between two tasks, and the refresh (a read of the whole backlog, its writes and a
    push per moved job) was most of that pass's time. With REFRESH_MIN_INTERVAL_S 0 (tests), at once."""
    if REFRESH_MIN_INTERVAL_S <= 0:
        refresh()
        return
    _current_refresher().wake.set()


def _current_refresher() -> _Refresher:
    global _refresher
    with _refresher_lock:
        current = _refresher
        if current is None or current.pid != os.getpid() or not current.thread.is_alive():
            wake = threading.Event()
            thread = threading.Thread(target=_refresh_loop, args=(wake,), name="queue-positions", daemon=True)
            current = _refresher = _Refresher(os.getpid(), wake, thread)
            thread.start()
        return current


def _refresh_loop(wake: threading.Event) -> None:
    """Refresh when woken, at most every REFRESH_MIN_INTERVAL_S across processes: when another process
    refreshed within it, once more when its interval ends (so the last change is shown within one)."""
    from django.db import connections

    while True:
        wake.wait()
        wake.clear()
        try:
            due = _mark_refreshing()
            if not due:
                # Someone began a refresh within the interval, maybe before our change. Once their interval
                # is over, a refresh begun since (the mark set again) has read our change, and that one is
                # enough. Sleeping a whole interval instead let a position lag an admission by two of them,
                # longer than a short job runs: a job could go from 2nd in line to started, never shown 1st.
                time.sleep(_mark_remaining_s())
                due = _mark_refreshing()
            if due:
                refresh()
        except Exception:  # noqa: BLE001 - the next admission pass or the deadlines task refreshes again
            logger.exception("queue positions: refresh failed")
        finally:
            # Closed after each refresh (at most a few a second): in a worker's main process an open socket
            # would be inherited by the pool children it forks later, and a test database could not be
            # dropped while this thread held a session on it.
            connections.close_all()


def _mark_remaining_s() -> float:
    """Seconds until the current refresh mark expires (the whole interval if Redis cannot say)."""
    try:
        remaining_ms = leases.client().pttl(leases._key("positions-refreshed"))
    except Exception:  # noqa: BLE001 - Redis away: the mark is unknowable, wait the longest it can last
        return REFRESH_MIN_INTERVAL_S
    return max(0, min(remaining_ms, REFRESH_MIN_INTERVAL_S * 1000)) / 1000 + 0.005


def _mark_refreshing() -> bool:
    """Mark a refresh as begun now, unless one began within REFRESH_MIN_INTERVAL_S (then False)."""
    try:
        return bool(leases.client().set(leases._key("positions-refreshed"), "1", nx=True,
                                        px=int(REFRESH_MIN_INTERVAL_S * 1000)))
    except Exception:  # noqa: BLE001 - Redis away: refresh anyway (positions are best kept fresh)
        return True


def _push(changed: list[tuple[Waiting, int]]) -> None:
    from realtime import events
    from realtime.publish import publish_status

    estimate = Estimator()
    for job, position in changed:
        message = events.queue_message(job_id=job.pk, queue_position=position,
                                       starts_in_s=estimate.starts_in_s(job.queue, job.job_type, position))
        publish_status(job_id=str(job.pk), project_id=str(job.project_id), message=message)


class Estimator:
    """Seconds until a waiting job starts: the rounds of its queue's slots ahead of it times the recent
    mean run time of its job type (None when no job of the type has run yet). Caches per instance."""

    def __init__(self) -> None:
        self._slots: dict[str, int] | None = None
        self._runs: dict[str, float | None] = {}

    def mean_run_s(self, job_type: str) -> float | None:
        if job_type not in self._runs:
            rows = (GenerationJob.objects.filter(job_type=job_type, status=states.COMPLETED, started_at__isnull=False)
                    .order_by("-completed_at").values_list("started_at", "completed_at")[:RECENT_RUNS])
            runs = [(end - start).total_seconds() for start, end in rows if end is not None]
            self._runs[job_type] = sum(runs) / len(runs) if runs else None
        return self._runs[job_type]

    def starts_in_s(self, queue: str, job_type: str, position: int | None) -> float | None:
        if position is None:
            return None
        run_s = self.mean_run_s(job_type)
        if run_s is None:
            return None
        if self._slots is None:
            self._slots = capacity.slots() or {}
        slots = max(1, self._slots.get(queue, 1))
        return round(math.ceil(position / slots) * run_s, 1)


def starts_in_s(job: GenerationJob) -> float | None:
    """The estimate for one job (pages)."""
    if job.current_queue_position is None:
        return None
    return Estimator().starts_in_s(job.queue, job.job_type, job.current_queue_position)
