"""The life of a delivery: claim a job's next one, attempt it, record the outcome, retry or give up.

A job's deliveries go out strictly in seq order: only its lowest pending delivery (the head) is ever
attempted, and the next one waits until the head is delivered or given up. A receiver that is down
therefore delays a job's later deliveries but never reorders them.
"""
from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .conf import WebhookSettings, webhook_settings
from .models import WebhookDelivery
from .secrets import signing_secrets
from .sender import Outcome, post
from .signing import signed_headers

logger = logging.getLogger(__name__)

CLAIM_MARGIN_S = 30.0  # beyond the attempt's timeout: a sender that died lets go of the head after this


def retry_delay_s(*, attempt: int, conf: WebhookSettings | None = None, rng: random.Random | None = None) -> float:
    """Delay before attempt `attempt + 1`: exponential from RETRY_BASE_S, capped, with +-20% jitter."""
    conf = conf or webhook_settings()
    base = min(conf.retry_max_s, conf.retry_base_s * conf.retry_factor ** max(0, attempt - 1))
    return base * (rng or random).uniform(0.8, 1.2)


def _claim_head(job_id: Any, conf: WebhookSettings) -> WebhookDelivery | None:
    """The job's head delivery if it is due and nobody else is sending it; None otherwise."""
    head = WebhookDelivery.objects.filter(job_id=job_id, state=WebhookDelivery.PENDING).order_by("seq").first()
    now = timezone.now()
    if head is None or (head.next_attempt_at and head.next_attempt_at > now):
        return None
    until = now + timedelta(seconds=conf.timeout_s + CLAIM_MARGIN_S)
    claimed = WebhookDelivery.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), pk=head.pk, state=WebhookDelivery.PENDING,
    ).update(claimed_until=until)
    if not claimed:
        return None
    head.claimed_until = until
    return head


def _record(delivery: WebhookDelivery, outcome: Outcome, conf: WebhookSettings) -> float | None:
    """Store the attempt's outcome; the delay until the next attempt, or None when the delivery is done."""
    delivery.attempt += 1
    delivery.status_code, delivery.error = outcome.status_code, outcome.error[:2000]
    delay: float | None = None
    if outcome.ok:
        delivery.state, delivery.next_attempt_at = WebhookDelivery.DELIVERED, None
    elif outcome.refused or delivery.attempt >= delivery.max_attempts:
        delivery.state, delivery.next_attempt_at = WebhookDelivery.FAILED, None
    else:
        delay = retry_delay_s(attempt=delivery.attempt, conf=conf)
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    delivery.claimed_until = None
    delivery.save(update_fields=["attempt", "status_code", "error", "state", "next_attempt_at", "claimed_until",
                                 "updated_at"])
    logger.info("webhook %s job.%s of job %s #%s: attempt %s -> %s %s", delivery.webhook_id, delivery.event,
                delivery.job_id, delivery.seq, delivery.attempt, outcome.status_code, delivery.state,
                extra={"job_id": str(delivery.job_id), "webhook_id": delivery.webhook_id})
    return delay


def delivery_attempt(*, delivery: WebhookDelivery, conf: WebhookSettings | None = None) -> float | None:
    """Sign and send one attempt of a claimed delivery; the retry delay, or None when it is finished."""
    conf = conf or webhook_settings()
    from jobs.models import GenerationJob

    owner_id = GenerationJob.objects.filter(pk=delivery.job_id).values_list("project__owner_id", flat=True).first()
    headers = signed_headers(webhook_id=delivery.webhook_id, body=delivery.body,
                             secrets=signing_secrets(user_id=owner_id))
    outcome = post(url=delivery.url, body=delivery.body, headers=headers, timeout_s=conf.timeout_s)
    return _record(delivery, outcome, conf)


def deliveries_send_for_job(*, job_id: Any) -> float | None:
    """Send the job's due deliveries in seq order until one must wait; that one's retry delay, if any."""
    conf = webhook_settings()
    while True:
        head = _claim_head(job_id, conf)
        if head is None:
            return None
        delay = delivery_attempt(delivery=head, conf=conf)
        if delay is not None:
            return delay


def jobs_with_due_deliveries(*, limit: int = 500) -> list[str]:
    """Jobs whose head delivery is due and unclaimed: lost tasks, long retries, crashed senders."""
    now = timezone.now()
    due = (WebhookDelivery.objects.filter(state=WebhookDelivery.PENDING, next_attempt_at__lte=now)
           .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
           .values_list("job_id", flat=True).distinct()[:limit])
    return [str(job_id) for job_id in due]


def deliveries_redeliver(*, delivery_ids: list[Any]) -> list[str]:
    """Admin "redeliver": the deliveries go out again (same webhook-id) with a fresh set of attempts."""
    conf = webhook_settings()
    job_ids = []
    for delivery in WebhookDelivery.objects.filter(pk__in=delivery_ids):
        delivery.state, delivery.next_attempt_at, delivery.claimed_until = WebhookDelivery.PENDING, timezone.now(), None
        delivery.max_attempts = delivery.attempt + conf.max_attempts
        delivery.save(update_fields=["state", "next_attempt_at", "claimed_until", "max_attempts", "updated_at"])
        job_ids.append(str(delivery.job_id))
    return sorted(set(job_ids))


def deliveries_delete_old(*, now: Any = None) -> int:
    """Delete delivery rows older than WEBHOOKS_RETENTION_DAYS (0 keeps them); how many went."""
    days = webhook_settings().retention_days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = WebhookDelivery.objects.filter(created_at__lt=cutoff).delete()
    return deleted
