"""Our patches of other projects' internals, each in its own module and each version-guarded.

Every patch names the upstream issue or limitation it works around and the release series it was tested
with (`TESTED`, checked by patches.versions.supported); with any other installed version it leaves the
stock behaviour in place and logs a warning saying why. Measured effects: docs/BENCHMARKS.md.

- twisted_tcp: Twisted's TCP transport writes at once when nothing is queued (web processes).
- django_asgi: Django's ASGI handler runs the sync middleware chain and view in one thread hop.
- request_threads: each HTTP request still has a sync thread of its own, taken from idle ones kept for reuse
  (asgiref started and joined two threads per request).
- channels_redis_pubsub: channels-redis's pub/sub layer tells consumers to resync after a reconnect,
  and decodes a group message once per process.
- channels_consumer: the consumers' dispatch loop without a task and `asyncio.wait` per message.
- django_asgi_streams: the SSE stream paths skip Django's per-request thread context (no thread per stream).
- daphne_websocket: daphne's websockets with a cap on unsent bytes per socket and pings a chatty peer
  cannot skip.
- daphne_body_limit: a request body over HTTP_MAX_BODY_BYTES is answered 413 before daphne buffers it.
- daphne_backpressure: a streamed HTTP response body waits while the client's connection is backed up.
- celery_consumer: the worker's consumer reconnects to a lost broker within a fraction of a second of its
  return (kombu waited 2, then 4 s), with the delayed-delivery step below.
- celery_delayed_delivery: a worker on RabbitMQ declares the delayed-delivery queues through the node it is
  connected to, not through every node of the broker list (one node down stalled it for about 18 s).
- celery_pool: the workers' prefork pool sends no task to a pool child that is recycling, and replaces it as
  soon as it has exited (Celery's pool could leave a task in the exiting child's pipe until its 5 s timer).
- kombu_redis_restore: a Redis-broker worker requeues the messages it held when its connection broke once it
  has reconnected (after a Sentinel failover kombu's immediate restore hit the dead master and they waited
  for the visibility timeout).
- daphne: `python -m patches.daphne`, the web process: daphne with the Twisted and daphne patches applied.
"""
