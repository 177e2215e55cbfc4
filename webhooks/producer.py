"""Turns committed job events into delivery rows, then asks a `webhooks` worker to send them.

Runs from jobs/listeners.py after a job change commits, in whichever process made it (web or worker): it
costs that process one cached lookup per job, and for a job with a webhook one INSERT per delivered
event. Sending happens elsewhere (webhooks/tasks.py), so a slow receiver never delays generation.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from jobs import states
from jobs.listeners import CommittedEvent

from .conf import webhook_settings
from .models import WebhookDelivery

logger = logging.getLogger(__name__)

# job id -> (webhook_url, events) or None; a job's webhook never changes after create, so this is exact.
_CACHE_SIZE = 10_000
_config_cache: OrderedDict[str, tuple[str, frozenset[str]] | None] = OrderedDict()
_cache_lock = threading.Lock()


def event_name(event: CommittedEvent) -> str | None:
    """The webhook event a committed job event is, if any (CONTRACT.md: start, progress, artifact, completed)."""
    if event.kind == "artifact":
        return "artifact"
    if event.kind == "progress":
        return "progress" if event.status == states.PROCESSING else None
    if event.status in states.TERMINAL and event.previous_status not in states.TERMINAL:
        return "completed"
    if event.status == states.PROCESSING and event.previous_status == states.QUEUED:
        return "start"
    return None


def _job_webhook(job_id: str) -> tuple[str, frozenset[str]] | None:
    with _cache_lock:
        if job_id in _config_cache:
            _config_cache.move_to_end(job_id)
            return _config_cache[job_id]
    from jobs.models import GenerationJob

    row = GenerationJob.objects.filter(pk=job_id).values_list("webhook_url", "webhook_events_filter").first()
    config = (row[0], frozenset(row[1] or ())) if row and row[0] else None
    with _cache_lock:
        _config_cache[job_id] = config
        while len(_config_cache) > _CACHE_SIZE:
            _config_cache.popitem(last=False)
    return config


def _progress_allowed(job_id: str) -> bool:
    """At most one progress delivery per job per interval, across all processes (a Redis SET NX)."""
    interval = webhook_settings().progress_min_interval_s
    if interval <= 0:
        return True
    try:
        return bool(cache.add(f"webhooks:progress:{job_id}", 1, timeout=max(1, round(interval))))
    except Exception:  # Redis down: better one progress delivery too many than none at all
        logger.warning("webhooks: progress throttle unavailable", exc_info=True)
        return True


def payload(*, event: CommittedEvent, name: str) -> str:
    """The delivery body: the job as the API shows it, at the moment of this event."""
    from jobs.api.serializers import JobSerializer
    from jobs.models import GenerationJob

    job = GenerationJob.objects.get(pk=event.job_id)
    data = dict(JobSerializer(job).data)
    # The row may already be further along than this event: report the event's own state.
    data.update(status=event.status, progress=event.progress, current_stage=event.current_stage,
                error_message=event.error_message, seq=event.seq)
    if event.status == states.COMPLETED:
        data["result"] = event.result
    if name == "artifact":  # which artifact: the websocket's `artifact` message, beside the job
        from realtime.events import committed_message

        data["artifact"] = committed_message(event)
    body = {"type": f"job.{name}", "timestamp": timezone.now().isoformat(), "data": data}
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))


def delivery_create(*, event: CommittedEvent, name: str, url: str) -> WebhookDelivery | None:
    """The delivery row of one event (None if it exists already: an event is delivered once)."""
    # Stages running in parallel commit progress in different processes, so a progress event can reach
    # this point after a later event's delivery exists; sending it then would go back in seq (and in
    # progress). A stale progress report is worth nothing: it is dropped instead.
    if name == "progress" and WebhookDelivery.objects.filter(job_id=event.job_id, seq__gt=event.seq).exists():
        return None
    try:
        with transaction.atomic():
            return WebhookDelivery.objects.create(
                webhook_id=f"msg_{uuid.uuid4().hex}", job_id=event.job_id, seq=event.seq, event=name, url=url,
                body=payload(event=event, name=name), max_attempts=webhook_settings().max_attempts,
                next_attempt_at=timezone.now(),
            )
    except IntegrityError:
        return None


def on_event_committed(event: CommittedEvent) -> None:
    """jobs.listeners listener: record the delivery, then wake the job's sender."""
    name = event_name(event)
    if name is None:
        return
    config = _job_webhook(event.job_id)
    if config is None or name not in config[1]:
        return
    if name == "progress" and not _progress_allowed(event.job_id):
        return
    if delivery_create(event=event, name=name, url=config[0]) is None:
        return
    from .tasks import deliver_job_webhooks_task

    try:
        deliver_job_webhooks_task.apply_async(args=[event.job_id], retry=False)
    except Exception:  # the broker is down: the row is saved, and the periodic sweep sends it later
        logger.warning("webhooks: could not enqueue delivery of job %s #%s", event.job_id, event.seq, exc_info=True)


def deliveries_backfill_final(*, within_s: float = 3600.0, settle_s: float = 30.0, limit: int = 500) -> list[str]:
    """Make the missing `completed` delivery of jobs that finished recently; the ids of the jobs it was made for.

    The listener runs after the commit in the process that finished the job: if that process died in between,
    the job's final status would never be delivered. The periodic sweep calls this to close that gap.
    """
    from jobs.models import GenerationJob

    now = timezone.now()
    final_delivery = WebhookDelivery.objects.filter(job_id=OuterRef("pk"), seq=OuterRef("seq"))
    missing = (GenerationJob.objects
               .filter(webhook_url__isnull=False, status__in=states.TERMINAL,
                       completed_at__gte=now - timedelta(seconds=within_s),
                       completed_at__lte=now - timedelta(seconds=settle_s))
               .exclude(Exists(final_delivery))
               .only("pk", "project_id", "job_type", "seq", "status", "progress", "current_stage", "error_message",
                     "result", "attempts", "webhook_url", "webhook_events_filter")[:limit])
    made = []
    for job in missing:
        if "completed" not in (job.webhook_events_filter or ()):
            continue
        event = CommittedEvent(
            job_id=str(job.pk), project_id=str(job.project_id), job_type=job.job_type, seq=job.seq, kind="status",
            status=job.status, previous_status=None, progress=job.progress, current_stage=job.current_stage,
            error_message=job.error_message, result=job.result if job.status == states.COMPLETED else None,
            attempt=job.attempts,
        )
        if delivery_create(event=event, name="completed", url=job.webhook_url) is not None:
            logger.warning("webhooks: job %s finished without a completed delivery; made it now", job.pk,
                           extra={"job_id": str(job.pk)})
            made.append(str(job.pk))
    return made
