"""How many jobs each user has running, sampled all through the soak: never more than their limit.

JOBS_MAX_RUNNING_PER_USER (CONTRACT.md) bounds a user's jobs that run at once. Admission (jobs/admission.py)
holds a job's slot from admission until it ends or is requeued, so a job whose worker was SIGKILLed still
counts until the reaper requeues it: at no instant may a user have more `processing` jobs than the limit.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

from django.db import connection
from django.db.models import Count

from jobs import states
from jobs.models import GenerationJob


class RunningSampler(threading.Thread):
    """Reads every user's count of processing jobs every `interval_s`, keeping the highest seen per user."""

    def __init__(self, interval_s: float = 0.25) -> None:
        super().__init__(name="soak-running-sampler", daemon=True)
        self.interval_s = interval_s
        self.highest: Counter[int] = Counter()
        self.samples = 0
        self.running = threading.Event()
        self.running.set()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while self.running.is_set():
                rows = (GenerationJob.objects.filter(status=states.PROCESSING)
                        .values_list("project__owner_id").annotate(n=Count("pk")))
                for owner_id, running in rows:
                    self.highest[owner_id] = max(self.highest[owner_id], running)
                self.samples += 1
                time.sleep(self.interval_s)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.failure = exc
        finally:
            connection.close()  # this thread's own connection: the test database is dropped after the test

    def stop(self) -> None:
        self.running.clear()
        self.join(10)
        assert self.failure is None, repr(self.failure)
