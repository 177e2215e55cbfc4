"""Celery entry points of webhook delivery: thin, id-taking, on the `webhooks` queue (sweeps on maintenance)."""
from __future__ import annotations

import logging

from celery import shared_task

from jobs.broker_delay import countdown as broker_countdown

logger = logging.getLogger(__name__)

# Retries further out than this are left to the periodic sweep rather than held as ETA tasks by a worker
# (the Redis transport would redeliver an ETA task held past its visibility timeout).
COUNTDOWN_MAX_S = 300.0


@shared_task(name="webhooks.tasks.deliver_job_webhooks_task", acks_late=False, ignore_result=True)
def deliver_job_webhooks_task(job_id: str) -> None:
    """Send the job's due deliveries in seq order; schedule a wake-up for the next retry if one must wait."""
    from .services import deliveries_send_for_job

    delay = deliveries_send_for_job(job_id=job_id)
    if delay is not None and delay <= COUNTDOWN_MAX_S:
        deliver_job_webhooks_task.apply_async(args=[job_id], countdown=broker_countdown(delay))


@shared_task(name="webhooks.tasks.sweep_deliveries_task", acks_late=False, ignore_result=True)
def sweep_deliveries_task() -> int:
    """Periodic: make final deliveries a crashed process missed, then wake the sender of every job whose
    next delivery is due (long retries, lost tasks)."""
    from .producer import deliveries_backfill_final
    from .services import jobs_with_due_deliveries

    deliveries_backfill_final()
    job_ids = jobs_with_due_deliveries()
    for job_id in job_ids:
        deliver_job_webhooks_task.apply_async(args=[job_id])
    return len(job_ids)


@shared_task(name="webhooks.tasks.cleanup_deliveries_task", acks_late=False, ignore_result=True)
def cleanup_deliveries_task() -> int:
    """Periodic: delete delivery rows older than WEBHOOKS_RETENTION_DAYS."""
    from .services import deliveries_delete_old

    return deliveries_delete_old()
