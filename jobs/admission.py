"""Admission: which waiting jobs Celery gets now, so no user can starve another.

A created job is `queued` in the database at once, but its plan is sent to Celery (jobs/dispatch.py) only
once admitted: its owner runs fewer jobs than their limit (JOBS_MAX_RUNNING_PER_USER, or staff's
UserJobLimit), and its queue has a free worker slot (jobs/capacity.py: the pool sizes of the live workers).
A job holds its slot from admission until it ends; one that is requeued (lost worker) waits again.

Turns go to users by start-time fair queueing (a weighted round-robin that needs no per-round state): each
user has a virtual finish tag; the user with the smallest start tag max(tag, clock) goes next, and their tag
moves on by 1 / weight of the job admitted (high 4, normal 2, low 1), so over time each backlogged user
gets worker time in proportion to the weights of the jobs they wait with, and a user arriving late starts
at the clock, neither behind nor ahead of everyone else. Within one user: priority, then age.

Race-free across processes: every pass runs in one transaction under one lock (a PostgreSQL advisory
transaction lock; SQLite's writers are serialised by BEGIN IMMEDIATE, settings.DATABASES), so counts
read in a pass are exact and only a pass raises them. A pass runs on every committed event that frees a
slot or adds a waiting job (jobs/dispatch.py's listener), when a worker first announces its capacity, and
from the deadlines task every few seconds as a safety net.
"""
from __future__ import annotations

import functools
import logging
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from . import capacity, leases, states
from .conf import job_settings
from .models import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL, FairShareTag, GenerationJob, UserJobLimit

logger = logging.getLogger(__name__)

WEIGHTS = {PRIORITY_LOW: 1.0, PRIORITY_NORMAL: 2.0, PRIORITY_HIGH: 4.0}
RANK = {PRIORITY_LOW: 0, PRIORITY_NORMAL: 1, PRIORITY_HIGH: 2}
CLOCK = "clock"
_LOCK_KEY = zlib.crc32(b"jobs.admission")  # the advisory lock's id (any constant bigint)


@dataclass
class Waiting:
    """One waiting job as admission sees it."""

    pk: Any
    job_type: str
    attempt: int
    queue: str
    priority: str
    created_at: datetime
    queued_at: datetime | None
    owner_id: int
    start_timeout_s: int | None
    project_id: Any = None
    queue_position: int | None = None
    owner_limit: int | None = None  # staff's UserJobLimit of the owner, if any

    @property
    def order(self) -> tuple:
        """Within one user: higher priority first, then older first."""
        return (-RANK.get(self.priority, 1), self.created_at, str(self.pk))

    def expired(self, now: datetime) -> bool:
        return (self.start_timeout_s is not None and self.queued_at is not None
                and now - self.queued_at >= timedelta(seconds=self.start_timeout_s))


def user_key(owner_id: Any) -> str:
    return f"user:{owner_id}"


# --- what holds a slot, what waits ------------------------------------------------------------------------

def waiting_jobs() -> QuerySet[GenerationJob]:
    """Queued plan jobs not yet handed to Celery (an external job's task is its caller's to send)."""
    return GenerationJob.objects.filter(status=states.QUEUED, admitted_at__isnull=True, external=False)


def holding_jobs() -> QuerySet[GenerationJob]:
    """Jobs holding a worker slot: admitted and not finished (a running job, or one whose message waits)."""
    return GenerationJob.objects.filter(external=False).filter(
        Q(status=states.PROCESSING) | Q(status=states.QUEUED, admitted_at__isnull=False))


def default_limit() -> int:
    return int(job_settings().MAX_RUNNING_PER_USER)


def user_limits(user_ids: Iterable[int]) -> dict[int, int]:
    """Each user's running limit (0 = none): staff's override, else JOBS_MAX_RUNNING_PER_USER."""
    ids = list(user_ids)
    limits = dict.fromkeys(ids, default_limit())
    limits.update(UserJobLimit.objects.filter(user_id__in=ids).values_list("user_id", "max_running"))
    return limits


def waiting_rows() -> QuerySet:
    """The waiting jobs as `Waiting`'s fields, in its order."""
    return waiting_jobs().values_list("pk", "job_type", "attempts", "queue", "priority", "created_at", "queued_at",
                                      "project__owner_id", "start_timeout_s", "project_id", "queue_position",
                                      "project__owner__job_limit__max_running")


def load_waiting() -> list[Waiting]:
    return [Waiting(*row) for row in waiting_rows()]


def load_tags(user_ids: Iterable[int]) -> dict[str, float]:
    keys = [CLOCK, *(user_key(uid) for uid in user_ids)]
    tags = dict.fromkeys(keys, 0.0)
    tags.update(FairShareTag.objects.filter(key__in=keys).values_list("key", "tag"))
    return tags


# --- the pass ---------------------------------------------------------------------------------------------

def lock(key: int = _LOCK_KEY) -> None:
    """Serialise admission passes (or, with another key, position refreshes) across every process; held
    until the transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@dataclass
class Admitted:
    job: Waiting
    waited_s: float


def held_counts() -> tuple[dict[str, int], dict[int, int]]:
    """Slots held per queue and per user, from one GROUP BY."""
    by_queue: dict[str, int] = defaultdict(int)
    by_user: dict[int, int] = defaultdict(int)
    rows = holding_jobs().order_by().values_list("queue", "project__owner_id").annotate(n=Count("pk"))
    for queue, owner_id, n in rows.values_list("queue", "project__owner_id", "n"):
        by_queue[queue] += n
        by_user[owner_id] += n
    return by_queue, by_user


def _free(slots: dict[str, int] | None, held_queue: dict[str, int]) -> dict[str, int]:
    """Free slots per queue ({} when no worker announced its capacity: the user limits alone decide)."""
    # Each pool process may also have one admitted job waiting for it in the broker (JOBS_ADMISSION_HEADROOM,
    # like Celery's prefetch): without it a process that ends a job sits idle for the whole pass and the
    # broker round trip, and a recycled pool child stalls its slot (tests/reliability/test_api_load.py ran
    # at a third of the pool's capacity). Per-user limits still count every admitted job.
    headroom = 1 + max(0, int(job_settings().ADMISSION_HEADROOM))
    return {} if slots is None else {queue: n * headroom - held_queue.get(queue, 0) for queue, n in slots.items()}


def _choose(now: datetime) -> tuple[list[Waiting], dict[str, float]]:
    """The jobs to admit now, in turn order, and the fair-share tags after admitting them (read by the ORM,
    a query at a time: the portable pass; jobs/admission_sql.py reads the same in one round trip)."""
    slots = capacity.slots()
    held_queue, held = held_counts()
    free = _free(slots, held_queue)
    if slots is not None and not any(n > 0 for n in free.values()):
        return [], {}  # every slot taken: nothing to decide, and no backlog to read (the common case under one)
    return decide(now, slots, free, held, load_waiting(), load_tags)


def decide(now: datetime, slots: dict[str, int] | None, free: dict[str, int], held: dict[int, int],
           waiting: list[Waiting], tags_of: Any) -> tuple[list[Waiting], dict[str, float]]:
    """The turn order itself (no I/O but `tags_of(owner_ids)`, the users' fair-share tags and the clock)."""
    waiting = [job for job in waiting if not job.expired(now)]
    if slots is not None and not any(free.get(job.queue, 0) > 0 for job in waiting):
        return [], {}
    per_user: dict[int, list[Waiting]] = defaultdict(list)
    for job in waiting:
        per_user[job.owner_id].append(job)
    for jobs in per_user.values():
        jobs.sort(key=lambda job: job.order)
    default = default_limit()
    limits = {owner_id: default if jobs[0].owner_limit is None else jobs[0].owner_limit
              for owner_id, jobs in per_user.items()}  # read with the waiting jobs: no query of its own
    tags = tags_of(per_user)
    chosen: list[Waiting] = []
    while True:
        best: tuple | None = None
        for owner_id, jobs in per_user.items():
            if limits[owner_id] and held[owner_id] >= limits[owner_id]:
                continue
            # With workers known, a queue none of them consumes has no slot; unknown: the user limit only.
            job = next((job for job in jobs if (slots is None or free.get(job.queue, 0) > 0)), None)
            if job is None:
                continue
            start = max(tags[user_key(owner_id)], tags[CLOCK])
            key = (start, tags[user_key(owner_id)], job.created_at)
            if best is None or key < best[0]:
                best = (key, owner_id, job)
        if best is None:
            return chosen, tags
        (start, _, _), owner_id, job = best
        per_user[owner_id].remove(job)
        held[owner_id] += 1
        if slots is not None:
            free[job.queue] = free.get(job.queue, 0) - 1
        tags[CLOCK] = start
        tags[user_key(owner_id)] = start + 1.0 / WEIGHTS.get(job.priority, 2.0)
        chosen.append(job)


def _mark_admitted(chosen: list[Waiting], now: datetime) -> list[Waiting]:
    """Record the admissions; a job cancelled meanwhile (no lock of ours covers a cancel) is left out.

    Two statements whatever the batch (they were one UPDATE per job): the rows still waiting are locked
    (a cancel holding one is waited for, then its new status excludes it), then updated together.
    """
    if not chosen:
        return []
    still = set(GenerationJob.objects.select_for_update().filter(
        pk__in=[job.pk for job in chosen], status=states.QUEUED, admitted_at__isnull=True).values_list("pk", flat=True))
    if still:
        GenerationJob.objects.filter(pk__in=still).update(admitted_at=now, queue_position=None)
    return [job for job in chosen if job.pk in still]


def _save_tags(tags: dict[str, float]) -> None:
    """One upsert of every tag the pass read (only this pass writes them: it holds the lock)."""
    FairShareTag.objects.bulk_create([FairShareTag(key=key, tag=tag) for key, tag in tags.items()],
                                     update_conflicts=True, unique_fields=["key"], update_fields=["tag"])


def _try_lock() -> bool:
    """Take the admission lock if it is free (SQLite: BEGIN IMMEDIATE already serialised this transaction)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _rerun_key() -> str:
    return leases._key("admission", "rerun")


def _request_pass() -> bool:
    """Ask the lock's holder for one more pass (a Redis flag); False when Redis cannot say it."""
    try:
        leases.client().set(_rerun_key(), "1", ex=60)
        return True
    except Exception:  # noqa: BLE001 - Redis away: the caller waits for the lock instead
        return False


def _take_request() -> bool:
    """Whether a pass was asked for since the flag was last taken (and take it): one round trip."""
    try:
        pipe = leases.client().pipeline(transaction=False)
        pipe.get(_rerun_key())
        pipe.delete(_rerun_key())
        return bool(pipe.execute()[0])
    except Exception:  # noqa: BLE001 - Redis away: every requester ran its own (blocking) pass
        return False


@functools.cache
def _reads() -> tuple[str, list[Any]]:
    from . import admission_sql

    return admission_sql.reads(holding=holding_jobs(), waiting=waiting_jobs(), waiting_rows=waiting_rows(),
                               user_prefix=user_key(""), clock=CLOCK)


def _decided_in_two_round_trips(*, wait: bool) -> tuple[list[Waiting], bool] | None:
    """The pass's decision and its record on PostgreSQL (jobs/admission_sql.py), and whether jobs still
    wait after it; None: lock taken."""
    from . import admission_sql

    slots = capacity.slots()  # Redis, read before the lock: a worker's capacity changes every few seconds at most
    locked, held_rows, rows, tag_rows = admission_sql.read_locked(lock_key=_LOCK_KEY, wait=wait, reads=_reads())
    if not locked:
        return None
    now = timezone.now()
    try:
        held_queue, held = admission_sql.held_maps(held_rows)

        def tags_of(user_ids: Iterable[int]) -> dict[str, float]:
            return {key: tag_rows.get(key, 0.0) for key in (CLOCK, *(user_key(uid) for uid in user_ids))}

        chosen, tags = decide(now, slots, _free(slots, held_queue), held, [Waiting(*row) for row in rows], tags_of)
    except BaseException:
        admission_sql.rollback()
        raise
    admitted = admission_sql.write_and_commit([job.pk for job in chosen], now, tags)
    return [job for job in chosen if job.pk in admitted], len(rows) > len(admitted)


def _decided_by_the_orm(*, wait: bool) -> tuple[list[Waiting], bool] | None:
    """The portable pass: Django's transaction, a query at a time (it does not count what still waits:
    say yes); None: lock taken."""
    with transaction.atomic():
        if wait:
            lock()
        elif not _try_lock():
            return None
        now = timezone.now()
        chosen, tags = _choose(now)
        admitted = _mark_admitted(chosen, now)
        if admitted:
            _save_tags(tags)
    return admitted, True


def _one_pass(*, wait: bool) -> tuple[list[Admitted], bool] | None:
    """One pass under the lock, and whether jobs still wait after it; None when another process holds
    the lock (see `admit`)."""
    from . import admission_sql

    started = time.perf_counter()
    decided = _decided_in_two_round_trips if admission_sql.usable() else _decided_by_the_orm
    decision = decided(wait=wait)
    if decision is None:
        return None
    admitted, left = decision
    now = timezone.now()
    result = [Admitted(job, (now - (job.queued_at or job.created_at)).total_seconds()) for job in admitted]
    _send(result)
    if result:
        logger.info("admission: admitted %s job(s) in %.1f ms", len(result), (time.perf_counter() - started) * 1000)
    return result, left


def admit(*, waiting: bool = False) -> list[Admitted]:
    """Choose, record and send every job that may start now; returns those this process admitted.
    `waiting`: the caller knows a job waits (it just queued one), so the cheap check is skipped.

    Passes coalesce: a pass takes the lock only if it is free; if it is not, it raises a flag and tries once
    more (the holder may have released it before the flag went up), else leaves: the holder takes the flag
    after its pass and runs again if it was raised, so 200 concurrent creates are a few passes, not a convoy
    of 200 behind one lock (that convoy delayed every freed slot by seconds). Uncontended, that costs one
    Redis round trip (taking the flag), not three.
    """
    from . import queue_positions

    # Most passes that a job's end asks for find nothing waiting (an idle pool, a user's last job): one
    # indexed read then, not the lock, the flag and the refresh. Skipping is safe: a job that starts
    # waiting after this read asks for a pass of its own once committed.
    if not waiting and not waiting_jobs().exists():
        return []
    admitted: list[Admitted] = []
    left = False
    while True:
        done = _one_pass(wait=False)
        if done is None:
            # Blocking when Redis cannot carry the request (as before the flag existed).
            done = _one_pass(wait=False) if _request_pass() else _one_pass(wait=True)
            if done is None:
                break  # the holder, still in its pass, will see the flag after it (and refresh)
        result, left = done
        admitted += result
        if not _take_request():
            break
    if left:  # positions change only for jobs still waiting (an admitted one's was cleared with its admission)
        queue_positions.refresh_soon()
    return admitted


def _send(admitted: list[Admitted]) -> None:
    """Hand each admitted job to Celery (a broker that is down leaves it admitted for the reaper to resend),
    then record every send of the pass in one statement (it was one commit per job)."""
    from ops import metrics

    from .dispatch import mark_dispatched, send_job

    sent = {}
    for item in admitted:
        job = item.job
        task_id = send_job(job_id=str(job.pk), job_type=job.job_type, attempt=job.attempt)
        if task_id is not None:
            sent[job.pk] = task_id
        metrics.observe_admission_wait(job.queue, item.waited_s)
    mark_dispatched(sent)


def admit_safely(*, waiting: bool = False) -> list[Admitted]:
    """`admit` for listeners and threads: a failure is logged (the next pass, at the latest the deadlines
    task a few seconds later, admits what this one could not)."""
    try:
        return admit(waiting=waiting)
    except Exception:  # noqa: BLE001 - the caller's change is committed; admission must not undo or break it
        logger.exception("admission pass failed; the next one retries")
        return []
