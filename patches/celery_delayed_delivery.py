"""Celery's native delayed delivery set up through the node the worker is connected to, not through every URL
of the broker list.

Upstream (celery 5.5+, `celery.worker.consumer.delayed_delivery.DelayedDelivery.start`): each time the
worker's consumer starts, including every restart after a lost broker connection, the bootstep declares the
delay exchanges and queues and binds the task queues through *each* URL of a `;` broker list in turn, four
tries per URL with 1, 3 and 5 s pauses, and it runs before the event loop starts: while one node of the list
is down, a worker that already reconnected to another node consumed nothing for about 18 s
(tests/reliability/test_rabbitmq_node_loss.py; no upstream issue tracks it). Our list names the nodes of one
cluster (docs/OPERATIONS.md), whose exchanges and quorum queues every node shares, so declaring once through
the connection the consumer just made is enough; if that fails, the queues declared at an earlier start are
durable and replicated, so the worker carries on (logged) rather than waiting.

The worker's consumer (patches/celery_consumer.py) runs this step in place of the stock one; it is only
included with quorum queues (RabbitMQ). Outside the tested celery series it does what the stock step does.
"""
from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer.delayed_delivery import DelayedDelivery as StockDelayedDelivery
from kombu.utils.url import maybe_sanitize_url

from .versions import supported

PATCH = "celery_delayed_delivery"
TESTED = {"celery": ">=5.5,<5.8"}
STOCK_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"
OUR_STEP = f"{__name__}:DelayedDelivery"

logger = logging.getLogger("patches")


class DelayedDelivery(StockDelayedDelivery):
    def start(self, c: Any) -> None:
        connection = getattr(c, "connection", None)
        if not supported(PATCH, TESTED) or connection is None:
            super().start(c)
            return
        self._validate_configuration(c.app)
        url = connection.as_uri(include_password=True)  # the node of the list it is connected to now
        try:
            self._setup_delayed_delivery(c, url)
        except Exception as exc:  # noqa: BLE001 - the durable declarations of an earlier start still serve
            logger.warning("patches: delayed delivery not set up through %s (%r); the worker goes on",
                           maybe_sanitize_url(url), exc)
