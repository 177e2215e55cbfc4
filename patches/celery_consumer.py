"""The worker's consumer (`worker_consumer`, config/celery_settings.py): Celery's, reconnecting to a lost
broker sooner, and with the delayed-delivery step of patches/celery_delayed_delivery.py.

Upstream (celery 5.x, `Consumer.ensure_connected` → kombu `Connection.ensure_connection`): a worker whose
broker connection broke tries again at once, then after 2 s, 4 s, 6 s … (kombu's defaults; Celery passes no
intervals and has no setting for them). A Sentinel failover names the new master about 2.2–2.5 s after the
master dies here, just after the 2 s try, so the worker's next try came 4 s later: about 6 s without scene
tasks while pushes had long resumed (bench/failover.py; docs/BENCHMARKS.md). Here the pauses start at
RECONNECT_START_S and grow by RECONNECT_STEP_S up to kombu's 30 s: a broker that is back is found within a
fraction of a second, a long outage still costs a try every 30 s, and `broker_connection_max_retries`
(100) still spans more than half an hour.

Outside the tested celery series the stock consumer runs.
"""
from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as StockConsumer

from . import celery_delayed_delivery
from .versions import supported

PATCH = "celery_consumer"
TESTED = {"celery": ">=5.5,<5.8", "kombu": ">=5.5,<5.8"}
RECONNECT_START_S = 0.25
RECONNECT_STEP_S = 0.5
RECONNECT_MAX_S = 30.0


class Consumer(StockConsumer):
    class Blueprint(StockConsumer.Blueprint):
        default_steps = [celery_delayed_delivery.OUR_STEP if step == celery_delayed_delivery.STOCK_STEP else step
                         for step in StockConsumer.Blueprint.default_steps]

    def ensure_connected(self, conn: Any) -> Any:
        if supported(PATCH, TESTED):
            conn.ensure_connection = functools.partial(
                type(conn).ensure_connection, conn, interval_start=RECONNECT_START_S,
                interval_step=RECONNECT_STEP_S, interval_max=RECONNECT_MAX_S)
        return super().ensure_connected(conn)
