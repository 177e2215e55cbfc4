"""Celery options that only apply to a RabbitMQ broker (an `amqp://` CELERY_BROKER_URL).

With RabbitMQ the job queues are quorum queues: replicated over the cluster's nodes (Raft), so losing one
node loses no message and no queue. What that changes for Celery, and why each option below exists:

- Quorum queues have no global QoS; Celery detects them (worker_detect_quorum_queues) and switches to a
  per-consumer prefetch, so a worker holds at most prefetch_multiplier x concurrency unacknowledged messages
  per queue it consumes (our Procfile runs one queue per worker, so that is still one per pool process).
- A countdown/ETA task would sit unacknowledged in the worker until due, and with per-consumer prefetch it
  blocks a slot; Celery 5.5+ instead uses RabbitMQ's native delayed delivery (a ladder of TTL queues that
  dead-letter into the task's exchange). That only works through a topic (or fanout) exchange, never a
  direct one, so each job queue gets its own topic exchange. The delay is whole seconds and at least 1
  (celery's calculate_routing_key refuses 0): see `jobs.broker_delay.countdown()`.
- RabbitMQ older than 4.0.1 drops a message dead-lettered in a cycle (a task retried a third time through
  the delay ladder, celery#9867); the pinned celery (5.7) strips the x-death headers before a retry is
  published (celery#10095).
- Publisher confirms: a dispatch returns only once the broker has the message (a quorum queue confirms
  after a majority of nodes wrote it), so a job recorded `dispatched` is really in the queue.
- The worker's consumer (patches/celery_consumer.py, every broker) declares the delayed-delivery queues
  through the node it is connected to, not through every node of the `;` list with pauses
  (patches/celery_delayed_delivery.py): with one node down the stock step kept a reconnected worker from
  consuming for about 18 s.

Pure: settings import this before Django is set up (kombu only).
"""
from __future__ import annotations

from collections.abc import Iterable

from kombu import Exchange, Queue

QUORUM = {"x-queue-type": "quorum"}


def is_amqp(url: str | None) -> bool:
    """Whether a broker URL (or the first of a `;`-separated failover list) is RabbitMQ."""
    first = (url or "").split(";", 1)[0].strip().lower()
    return first.startswith(("amqp://", "amqps://", "pyamqp://"))


def task_queues(names: Iterable[str]) -> list[Queue]:
    """One durable quorum queue per job queue, each bound to its own topic exchange by its own name."""
    return [Queue(name, Exchange(name, type="topic", durable=True), routing_key=name, durable=True,
                  queue_arguments=dict(QUORUM)) for name in names]


def celery_options(queue_names: Iterable[str], *, write_timeout_s: float) -> dict[str, object]:
    """Celery's settings (lower-case names) for a RabbitMQ broker; settings.py sets them as CELERY_*."""
    return {
        "task_queues": task_queues(queue_names),
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        "broker_native_delayed_delivery_queue_type": "quorum",
        "broker_transport_options": transport_options(write_timeout_s=write_timeout_s),
    }


def transport_options(*, write_timeout_s: float) -> dict[str, object]:
    """py-amqp connection options: confirmed publishes, and a send that cannot hang on a stuck broker."""
    return {"confirm_publish": True, "write_timeout": write_timeout_s}
