"""Maintenance: every job reaches a terminal state, and old task results go away.

`reap_jobs` runs from a periodic task on the `maintenance` queue. It holds a Redis lock for its run, so two
beat processes (or two slow runs) never reap at once; every action is also a conditional, attempt-checked
service call, so even an unlocked second run could not requeue a job twice.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ops import metrics

from . import leases, services, states
from .conf import JobSettings, job_settings
from .models import GenerationJob

logger = logging.getLogger(__name__)

# A job that was never dispatched (broker down at create) waits at least this long, so the reaper does
# not race the on-commit dispatch of a job created a moment ago.
UNDISPATCHED_GRACE_S = 5.0


@dataclass
class ReapReport:
    ran: bool = True
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ran": self.ran, "requeued": self.requeued, "failed": self.failed, "redispatched": self.redispatched,
                "timed_out": self.timed_out}


def reap_jobs() -> ReapReport:
    """Requeue (or fail) processing jobs whose lease went stale; dispatch queued jobs that have no task."""
    conf = job_settings()
    # The lock outlives a reaper killed mid-run; keep that pause short (every action below is a
    # conditional update, so an overlap after expiry is harmless).
    with leases.exclusive("reaper", ttl_s=max(5.0, conf.REAPER_INTERVAL_S * 2)) as acquired:
        if not acquired:
            logger.info("reaper: another run holds the lock; skipping")
            return ReapReport(ran=False)
        report = ReapReport()
        now = timezone.now()
        _fail_overdue(report, now, conf)
        _reap_lost_workers(report, now, conf)
        _redispatch_waiting(report, now, conf)
    if report.requeued or report.failed or report.redispatched or report.timed_out:
        logger.info("reaper: %s", report.as_dict())
    return report


def _fail_overdue(report: ReapReport, now: datetime, conf: JobSettings) -> None:
    """Fail processing jobs past JOB_TIME_LIMIT_S whose worker is not there to notice (its heartbeat does)."""
    overdue = GenerationJob.objects.filter(
        status=states.PROCESSING, started_at__lt=now - timedelta(seconds=conf.JOB_TIME_LIMIT_S)
    ).values_list("pk", "attempts")
    for job_id, attempt in overdue:
        if services.job_time_out(job_id=job_id, attempt=attempt) is not None:
            report.timed_out.append(str(job_id))
            metrics.count_reaper_action("timed_out")


def _looks_lost(job_id: object, attempt: int, conf: JobSettings) -> bool:
    """A processing job with a stale row lease whose stages do not show a live holder either."""
    # A stage waiting out a retry backoff keeps a live lease without heartbeating the row.
    if leases.live_holders(job_id, attempt):
        return False
    # Between stages nothing heartbeats: the next stage's message waits behind a backlog. Give it the
    # patience a queued job gets before counting a lost worker (tests/reliability/test_api_load.py failed
    # 200 jobs "worker lost 3 times" without this).
    handed_over = leases.handed_over_at(job_id, attempt)
    return handed_over is None or time.time() - handed_over >= conf.QUEUED_REDISPATCH_AFTER_S


def _reap_lost_workers(report: ReapReport, now: datetime, conf: JobSettings) -> None:
    stale_before = now - timedelta(seconds=conf.STALE_AFTER_S)
    stale = GenerationJob.objects.filter(status=states.PROCESSING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    ).values_list("pk", "attempts", "heartbeat_at")
    for job_id, attempt, heartbeat_at in stale:
        if not _looks_lost(job_id, attempt, conf):
            continue
        quiet_s = (now - heartbeat_at).total_seconds() if heartbeat_at else conf.STALE_AFTER_S
        # The fail-or-requeue decision is the service's, under the row lock (the read above is unlocked).
        outcome = services.job_record_lost_worker(job_id=job_id, attempt=attempt,
                                                  reason=f"no heartbeat for {quiet_s:.0f} s")
        if outcome == "requeued":
            report.requeued.append(str(job_id))
        elif outcome == "failed":
            report.failed.append(str(job_id))


def _redispatch_waiting(report: ReapReport, now: datetime, conf: JobSettings) -> None:
    """Send admitted jobs again whose send failed (broker down) or whose message went nowhere.

    Only admitted jobs: the others wait in the database for admission (jobs/admission.py), not in the
    broker, so a long backlog is never re-sent and adds no duplicate messages.
    """
    from .dispatch import dispatch_job

    grace = min(UNDISPATCHED_GRACE_S, conf.QUEUED_REDISPATCH_AFTER_S)
    # An external job waits for its caller's task (JobService.create_job): there is no plan to send.
    waiting = GenerationJob.objects.filter(status=states.QUEUED, external=False, admitted_at__isnull=False).filter(
        Q(dispatched_at__isnull=True, admitted_at__lt=now - timedelta(seconds=grace))
        | Q(dispatched_at__lt=now - timedelta(seconds=conf.QUEUED_REDISPATCH_AFTER_S))
    ).values_list("pk", "job_type", "attempts")
    for job_id, job_type, attempt in waiting:
        if dispatch_job(job_id=str(job_id), job_type=job_type, attempt=attempt):
            report.redispatched.append(str(job_id))
            metrics.count_reaper_action("redispatched")


def cleanup_task_results() -> int:
    """Delete django-celery-results rows older than CELERY_RESULT_EXPIRES; returns how many went."""
    from django_celery_results.models import GroupResult, TaskResult

    cutoff = timezone.now() - timedelta(seconds=int(getattr(settings, "CELERY_RESULT_EXPIRES", 3600)))
    deleted, _ = TaskResult.objects.filter(date_done__lt=cutoff).delete()
    groups, _ = GroupResult.objects.filter(date_done__lt=cutoff).delete()
    if deleted or groups:
        logger.info("deleted %s task results and %s group results older than %s", deleted, groups, cutoff)
    return deleted
