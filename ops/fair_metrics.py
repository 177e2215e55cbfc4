"""Scrape-time gauges of fair sharing (jobs/admission.py): who waits where, and for how long.

`jobs_oldest_queued_age_seconds` per queue is the signal an autoscaler needs (work waits for workers).
"""
from __future__ import annotations

import logging
from typing import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)


def waiting_counts() -> dict[tuple[str, str, str], int]:
    """{(queue, user class, priority): jobs waiting for admission}; user class is staff or user."""
    from django.db.models import Count

    from jobs.admission import waiting_jobs

    rows = (waiting_jobs().order_by().values_list("queue", "project__owner__is_staff", "priority")
            .annotate(n=Count("pk")))
    return {(queue, "staff" if staff else "user", priority): n for queue, staff, priority, n in rows}


def oldest_ages() -> dict[str, float]:
    """{queue: seconds the oldest waiting job has waited}."""
    from django.db.models import Min
    from django.utils import timezone

    from jobs.admission import waiting_jobs

    now = timezone.now()
    rows = waiting_jobs().order_by().values_list("queue").annotate(oldest=Min("queued_at"))
    return {queue: max(0.0, (now - oldest).total_seconds()) for queue, oldest in rows if oldest is not None}


class FairnessCollector:
    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("jobs_waiting", "Jobs waiting for admission, by queue, user class and priority.",
                                    labels=["queue", "user_class", "priority"])
        oldest = GaugeMetricFamily("jobs_oldest_queued_age_seconds",
                                   "Seconds the oldest job waiting for admission has waited, per queue.",
                                   labels=["queue"])
        try:
            for labels, n in sorted(waiting_counts().items()):
                waiting.add_metric(list(labels), n)
            for queue, age in sorted(oldest_ages().items()):
                oldest.add_metric([queue], age)
        except Exception:  # the database is down: JobsCollector reports the source as down
            logger.warning("metrics: fair-sharing gauges unavailable", exc_info=True)
            return
        yield waiting
        yield oldest
