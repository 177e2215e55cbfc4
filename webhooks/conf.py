"""Typed access to settings.WEBHOOKS (defaults and environment variables live in config/settings.py)."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class WebhookSettings:
    allow_private: bool = False  # WEBHOOKS_ALLOW_PRIVATE: loopback/private receivers (development, tests)
    timeout_s: float = 10.0  # a delivery without a 2xx within this time is retried
    max_attempts: int = 9  # attempts of one delivery before it is given up
    retry_base_s: float = 10.0  # the first retry's delay (before jitter)
    retry_factor: float = 4.0  # each later retry waits this many times longer ...
    retry_max_s: float = 6 * 3600.0  # ... up to this delay
    progress_min_interval_s: float = 1.0  # at most one progress delivery per job per this interval
    secret_overlap_s: float = 24 * 3600.0  # a rotated-out secret still signs for this long
    retention_days: int = 30  # delivery rows older than this are deleted
    sweep_interval_s: float = 30.0  # how often due deliveries are looked for (lost tasks, long retries)


def webhook_settings() -> WebhookSettings:
    raw = getattr(settings, "WEBHOOKS", {}) or {}
    return WebhookSettings(**{key.lower(): value for key, value in raw.items()})
