"""Removing stored artifacts: a deleted job's or project's; other attempts' leftovers once an attempt
completed; and (periodic maintenance) finished jobs' artifacts past ARTIFACT_RETENTION_DAYS.

Only keys of attempts that are over are ever deleted here: a job retried meanwhile writes under a newer
attempt's prefix (jobs/locations.py), which these functions never touch.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import states
from .locations import job_prefix, url_key
from .pipeline.store import StoreRefused, StoreUnavailable
from .store import get_store

logger = logging.getLogger(__name__)

_ATTEMPT = re.compile(r"^jobs/[^/]+/a(\d+)/")
RUN_BUDGET_S = 120.0  # one maintenance run stops starting batches after this long (the next run goes on)


def expires_at(completed_at: datetime | None = None) -> str | None:
    """When a job finishing at `completed_at` (now) loses its artifacts, ISO-8601; None when kept forever."""
    days = int(settings.ARTIFACT_RETENTION_DAYS)
    if days <= 0:
        return None
    return ((completed_at or timezone.now()) + timedelta(days=days)).isoformat()


def delete_job_files(job_id: object) -> int:
    """Delete every stored object of a job (all attempts); a store that is down is logged, never raised."""
    try:
        return get_store().delete_prefix(job_prefix(job_id))
    except (StoreUnavailable, StoreRefused) as exc:
        # The job row is gone already, so retention will not find these objects: the warning names the prefix
        # to remove by hand (with the local store, the media sweep removes the orphan folder).
        logger.warning("job %s: its stored files (%s/) could not be deleted: %s", job_id, job_prefix(job_id), exc,
                       extra={"job_id": str(job_id)})
        return 0


def _attempt_of(key: str) -> int | None:
    match = _ATTEMPT.match(key)
    return int(match.group(1)) if match else None


def drop_other_attempts(job_id: object, attempt: int, result: dict[str, Any] | None) -> int:
    """Once `attempt` completed the job: delete earlier attempts' objects its result does not use (what a
    killed or superseded attempt stored), so the bucket holds one copy of each artifact. Logged, never raised."""
    keep = {url_key(job_id, str(item.get("url") or "")) for item in (result or {}).get("artifacts") or []}
    try:
        store = get_store()
        stale = [key for key in store.keys(job_prefix(job_id))
                 if (found := _attempt_of(key)) is not None and found < attempt and key not in keep]
        return store.delete(stale) if stale else 0
    except (StoreUnavailable, StoreRefused) as exc:
        logger.warning("job %s: earlier attempts' files not deleted: %s", job_id, exc, extra={"job_id": str(job_id)})
        return 0


@dataclass
class RetentionReport:
    expired_jobs: list[str] = field(default_factory=list)
    objects: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"expired_jobs": len(self.expired_jobs), "objects": self.objects, "errors": self.errors}


def expire_artifacts(*, now: datetime | None = None, batch: int | None = None) -> RetentionReport:
    """Delete the artifacts of jobs finished more than ARTIFACT_RETENTION_DAYS ago, `batch` jobs at a time,
    and mark each job's result expired (services.job_mark_expired). Nothing when the setting is 0."""
    from . import services
    from .models import GenerationJob

    report = RetentionReport()
    days = int(settings.ARTIFACT_RETENTION_DAYS)
    if days <= 0:
        return report
    cutoff = (now or timezone.now()) - timedelta(days=days)
    size = int(batch or settings.ARTIFACT_RETENTION_BATCH)
    started = time.monotonic()
    store = get_store()
    seen: set[str] = set()
    while time.monotonic() - started < RUN_BUDGET_S:
        # "No expired key" spelled so that SQL NULLs (no result, no key) never drop a row on any database.
        rows = list(GenerationJob.objects.filter(status__in=states.TERMINAL, completed_at__lt=cutoff)
                    .filter(Q(result__isnull=True) | ~Q(result__has_key="expired")).exclude(pk__in=seen)
                    .order_by("completed_at").values_list("pk", "attempts")[:size])
        if not rows:
            break
        for pk, attempt in rows:
            seen.add(pk)
            try:
                keys = [key for key in store.keys(job_prefix(pk)) if (_attempt_of(key) or 0) <= attempt]
                report.objects += store.delete(keys) if keys else 0
            except (StoreUnavailable, StoreRefused) as exc:
                report.errors += 1
                logger.warning("retention: job %s: artifacts not deleted, next run tries again: %s", pk, exc)
                continue
            if services.job_mark_expired(job_id=pk, attempt=attempt):
                report.expired_jobs.append(str(pk))
    if report.expired_jobs or report.errors:
        logger.info("retention: %s", report.as_dict())
    return report
