"""Periodic maintenance of the API's own tables."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="api.tasks.sweep_idempotency_keys_task", acks_late=False)
def sweep_idempotency_keys_task() -> int:
    """Periodic: delete Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_S."""
    from .idempotency import idempotency_keys_sweep

    return idempotency_keys_sweep()
