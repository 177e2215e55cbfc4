"""Queue depths on a RabbitMQ broker, for /metrics: a passive queue.declare per queue (the same answer
`rabbitmqctl list_queues messages_ready` gives, through the AMQP port every worker already reaches, so the
management plugin is not needed).

A queue that does not exist yet (no worker has declared it) holds nothing: RabbitMQ answers 404 and closes
the channel, so the next queue is asked on a fresh one.
"""
from __future__ import annotations

from collections.abc import Iterable

# Each scrape answers within a few seconds even when the broker stalls.
CONNECT_TIMEOUT_S = 1.0
REPLY_TIMEOUT_S = 2.0


def queue_depths(app, queues: Iterable[str]) -> dict[str, int]:
    """{queue: messages ready} for each queue, over one short-lived connection of the Celery `app`."""
    from amqp.exceptions import NotFound

    depths: dict[str, int] = {}
    options = {"read_timeout": REPLY_TIMEOUT_S, "write_timeout": REPLY_TIMEOUT_S}
    with app.connection_for_read(connect_timeout=CONNECT_TIMEOUT_S, transport_options=options) as connection:
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        try:
            for queue in queues:
                try:
                    _, ready, _ = channel.queue_declare(queue=queue, passive=True)
                except NotFound:
                    ready = 0
                    channel = connection.channel()  # the broker closed the one that asked
                depths[queue] = int(ready)
        finally:
            channel.close()
    return depths
