"""How many jobs each queue can run at once, learned from the workers that are running now.

Every Celery worker announces itself (its queues and its pool size) in one Redis hash, refreshed every
ANNOUNCE_INTERVAL_S by a thread of the worker's main process, each entry valid for ENTRY_TTL_S. A worker
that stops removes its entry; one that is SIGKILLed simply stops refreshing it, and its capacity goes
away within ENTRY_TTL_S. So the pool size is configured once (`--concurrency`), never again here.

Admission (jobs/admission.py) reads `slots()` at every pass: one HGETALL.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from . import leases

logger = logging.getLogger(__name__)

ANNOUNCE_INTERVAL_S = 5.0
ENTRY_TTL_S = 15.0


def _key() -> str:
    return leases._key("workers")


def announce(hostname: str, queues: list[str], concurrency: int) -> None:
    """Record (or refresh) one worker's queues and pool size."""
    entry = {"queues": sorted(queues), "concurrency": int(concurrency), "until": time.time() + ENTRY_TTL_S}
    leases.client().hset(_key(), hostname, json.dumps(entry))


def withdraw(hostname: str) -> None:
    """Forget a worker that is shutting down."""
    leases.client().hdel(_key(), hostname)


def live_workers(now: float | None = None) -> dict[str, dict[str, Any]]:
    """{hostname: {"queues", "concurrency", "until"}} of the workers whose announcement is fresh."""
    now = time.time() if now is None else now
    raw = leases.client().hgetall(_key())
    workers, expired = {}, []
    for hostname, value in raw.items():
        try:
            entry = json.loads(value)
        except ValueError:
            expired.append(hostname)
            continue
        if entry.get("until", 0) < now:
            expired.append(hostname)
        else:
            workers[hostname] = entry
    if expired:  # entries of killed workers: tidy up, best effort
        try:
            leases.client().hdel(_key(), *expired)
        except redis.RedisError:
            pass
    return workers


def slots() -> dict[str, int] | None:
    """{queue: pool processes consuming it} over the live workers (0 for a queue none of them consumes);
    None when no worker has announced itself or Redis cannot say.

    Admission then holds jobs back by the per-user limit only (jobs/admission.py): a system whose workers
    run no announcer (or a moment of Redis trouble) still runs its jobs, as before admission existed.
    """
    try:
        workers = live_workers()
    except redis.RedisError as exc:
        logger.warning("worker capacity unknown (%s); admitting by the per-user limit only", exc)
        return None
    if not workers:
        return None
    total: dict[str, int] = {}
    for entry in workers.values():
        for queue in entry.get("queues", ()):
            total[queue] = total.get(queue, 0) + int(entry.get("concurrency", 0))
    return total


# --- the worker side: started from ops/celery_signals.py at worker_ready ----------------------------------

class Announcer(threading.Thread):
    """Refreshes this worker's entry until stopped; a failed refresh is retried next interval.

    The queues are read at every refresh: an operator's add_consumer / cancel_consumer changes them live.
    When what it announces changes (the first time included), it runs an admission pass: waiting jobs
    may start now.
    """

    def __init__(self, hostname: str, consumer: Any, concurrency: int) -> None:
        super().__init__(name="capacity-announcer", daemon=True)
        self.hostname, self.consumer, self.concurrency = hostname, consumer, concurrency
        self.stopped = threading.Event()
        self.announced: tuple | None = None

    def queues(self) -> list[str]:
        task_consumer = getattr(self.consumer, "task_consumer", None)
        return sorted(queue.name for queue in (task_consumer.queues if task_consumer else ()))

    def run(self) -> None:
        while True:
            try:
                current = (tuple(self.queues()), self.concurrency)
                announce(self.hostname, list(current[0]), self.concurrency)
                if current != self.announced:
                    self.announced = current
                    self.admit()
            except Exception as exc:  # Redis or the database away for a moment: the next beat tries again
                logger.warning("could not announce worker capacity (%s)", exc)
            if self.stopped.wait(ANNOUNCE_INTERVAL_S):
                return

    @staticmethod
    def admit() -> None:
        """A pass from the worker's main process; its connection is closed again, so pool children forked
        later (max-tasks-per-child) never inherit an open database socket."""
        from django.db import connections

        from .admission import admit_safely

        try:
            admit_safely()
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stopped.set()
        try:
            withdraw(self.hostname)
        except redis.RedisError:
            pass


_announcer: Announcer | None = None


def start_announcing(consumer: Any) -> None:
    """worker_ready: announce this worker's queues and pool size, and keep the announcement fresh."""
    global _announcer
    controller = getattr(consumer, "controller", None)
    hostname = getattr(consumer, "hostname", None) or getattr(controller, "hostname", "worker")
    concurrency = int(getattr(controller, "concurrency", 0) or 0)
    if not concurrency:
        return
    _announcer = Announcer(hostname, consumer, concurrency)
    _announcer.start()


def stop_announcing(**_: object) -> None:
    """worker_shutdown: the capacity goes away at once, not after ENTRY_TTL_S."""
    global _announcer
    if _announcer is not None:
        _announcer.stop()
        _announcer = None
