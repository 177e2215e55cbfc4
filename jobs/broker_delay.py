"""Countdowns as the broker can deliver them: RabbitMQ's native delayed delivery counts whole seconds.

Runtime code for the tasks and the dispatch; the broker settings themselves are in config/amqp.py.
"""
from __future__ import annotations

import math

from config.amqp import is_amqp


def countdown(seconds: float, *, native_delay: bool | None = None) -> float:
    """The countdown to publish with: native delayed delivery counts whole seconds, at least 1 (a 0.4 s
    retry backoff would otherwise be refused by celery, and 1.9 s truncated to 1). `native_delay` defaults
    to whether the running Celery app's broker is RabbitMQ."""
    if native_delay is None:
        from celery import current_app

        native_delay = is_amqp(current_app.conf.broker_url)
    if not native_delay or seconds <= 0:
        return seconds
    return float(max(1, math.ceil(seconds)))
