"""Celery's settings (config/celery.py reads them from Django settings under the CELERY_ namespace): the
broker and its transport options, the result backend, how tasks and workers run, and the queues and routes.

Pure: settings.py calls `celery_settings()` before Django is set up (kombu only).
"""
from __future__ import annotations

from typing import Any

from kombu import Queue

from jobs import queues as job_queues  # pure constants: no Django app is loaded here

from . import amqp as amqp_broker
from . import redis_roles
from .env import env_float, env_int, env_str


def celery_settings(*, broker_role: redis_roles.RedisRole | None, key_prefix: str, time_zone: str) -> dict[str, Any]:
    """Every CELERY_* setting, with JOB_QUEUES and WORKER_DB_CONN_MAX_AGE, by their settings names."""
    values = {**_broker(broker_role, key_prefix), **_results(), **_execution(time_zone), **_routing()}
    # --- RabbitMQ: an amqp:// CELERY_BROKER_URL declares the job queues as quorum queues (config/amqp.py says
    # why each option is there; docs/OPERATIONS.md the cluster layout). The Redis-only transport options go.
    if amqp_broker.is_amqp(values["CELERY_BROKER_URL"]):
        amqp_options = amqp_broker.celery_options(values["JOB_QUEUES"],
                                                  write_timeout_s=env_float("CELERY_BROKER_SOCKET_TIMEOUT", 5.0))
        values.update({f"CELERY_{name.upper()}": value for name, value in amqp_options.items()})
    return values


def _broker(role: redis_roles.RedisRole | None, key_prefix: str) -> dict[str, Any]:
    url, sentinel_options = redis_roles.celery_broker(role, env_str("CELERY_BROKER_URL"))
    transport_options = {
        **sentinel_options,
        # Longer than the hard time limit so a running task is never handed to a second worker.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600 + 600),
        "global_keyprefix": f"{key_prefix}:",
    }
    # Dispatch happens inside an API request (on commit) and publishes with retry=False: with a short connect
    # timeout it fails fast when the broker is down, and the reaper dispatches the still-queued job later.
    # Workers keep Celery's publish retries for the next stage of a chain.
    transport_options.setdefault("socket_connect_timeout", 2)
    # A broker that accepts connections but never answers (stuck, swapping) hung a request that dispatches on
    # commit or revokes; now each of those calls gives up after this many seconds (the job stays queued and
    # the reaper dispatches it later). Longer than kombu's 1 s BRPOP wait, so idle workers are unaffected.
    transport_options.setdefault("socket_timeout", env_float("CELERY_BROKER_SOCKET_TIMEOUT", 5.0))
    # A worker's BRPOP runs in the event loop, where no socket timeout applies: a broker that stops answering
    # without closing the connection (a hung or lost master; a Sentinel failover away from it) is noticed only
    # once the reply is this much overdue, and a silent pub/sub connection after this many unanswered seconds
    # (kombu's default 25 s kept a worker off the new master for 40 s: tests/reliability/test_redis_sentinel.py).
    transport_options.setdefault("health_check_interval", env_float("CELERY_BROKER_HEALTH_CHECK_S", 5.0))
    return {
        "CELERY_BROKER_URL": url,
        "CELERY_BROKER_TRANSPORT_OPTIONS": transport_options,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        "CELERY_BROKER_CONNECTION_TIMEOUT": env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0),
        # Reconnects to a lost broker within a fraction of a second of its return, not on kombu's 2, 4, 6 s
        # steps; with RabbitMQ, declares the delayed-delivery queues through one node (patches/).
        "CELERY_WORKER_CONSUMER": "patches.celery_consumer:Consumer",
        # Celery's prefork pool, sending no task to a recycling pool child and replacing it as soon as it has
        # exited rather than on the pool's 5 s timer (patches/celery_pool.py). `prefork`: Celery's own.
        "CELERY_WORKER_POOL": env_str("CELERY_WORKER_POOL", "patches.celery_pool:TaskPool"),
    }


def _results() -> dict[str, Any]:
    return {
        # django-celery-results' table; ops/result_backend.py retries a store whose connection PostgreSQL ended
        # (at most CELERY_RESULT_BACKEND_MAX_RETRIES times, backing off from 10 ms, about 5 s in all) instead
        # of the worker's main process stopping on it.
        "CELERY_RESULT_BACKEND": "ops.result_backend:DatabaseBackend",
        "CELERY_RESULT_BACKEND_ALWAYS_RETRY": True,
        "CELERY_RESULT_BACKEND_MAX_RETRIES": env_int("CELERY_RESULT_BACKEND_MAX_RETRIES", 8),
        "CELERY_RESULT_EXTENDED": True,
        "CELERY_RESULT_EXPIRES": env_int("CELERY_RESULT_EXPIRES", 3600),
        "CELERY_RESULT_SERIALIZER": "json",
    }


def _execution(time_zone: str) -> dict[str, Any]:
    return {
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_TASK_TRACK_STARTED": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_WORKER_MAX_TASKS_PER_CHILD": env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 10),
        # Pool children keep their PostgreSQL connection across tasks: celery's Django fix-up otherwise closes
        # it before and after every task, so every job task connected anew. ops/celery_signals.py health-checks
        # the kept connection at each task start and replaces it after an error or WORKER_DB_CONN_MAX_AGE
        # seconds; the fix-up still closes it every CELERY_DB_REUSE_MAX tasks. Web processes keep
        # CONN_MAX_AGE = 0 (config/database.py).
        "CELERY_DB_REUSE_MAX": env_int("CELERY_DB_REUSE_MAX", 100),
        "WORKER_DB_CONN_MAX_AGE": env_int("WORKER_DB_CONN_MAX_AGE", 60),
        "CELERY_TASK_TIME_LIMIT": env_int("CELERY_TASK_TIME_LIMIT", 3600),
        "CELERY_TASK_SOFT_TIME_LIMIT": env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3540),
        "CELERY_BEAT_SCHEDULER": "django_celery_beat.schedulers:DatabaseScheduler",
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        "CELERY_TIMEZONE": time_zone,
        "CELERY_TASK_SEND_SENT_EVENT": False,
    }


def _routing() -> dict[str, Any]:
    """One queue per kind of work so each can get its own workers; `maintenance` carries our periodic tasks."""
    return {
        "JOB_QUEUES": job_queues.ALL,
        "CELERY_TASK_DEFAULT_QUEUE": "maintenance",
        "CELERY_TASK_QUEUES": [Queue(name, routing_key=name) for name in job_queues.ALL],
        "CELERY_TASK_ROUTES": (
            {
                "jobs.tasks.reap_jobs_task": {"queue": job_queues.MAINTENANCE},
                "jobs.tasks.enforce_deadlines_task": {"queue": job_queues.MAINTENANCE},
                "jobs.tasks.cleanup_results_task": {"queue": job_queues.MAINTENANCE},
                "jobs.tasks.terminate_cancelled_job_task": {"queue": job_queues.MAINTENANCE},
                "api.tasks.sweep_idempotency_keys_task": {"queue": job_queues.MAINTENANCE},
                # A slow receiver only ever holds a webhooks worker; the periodic webhook tasks are maintenance.
                "webhooks.tasks.deliver_job_webhooks_task": {"queue": job_queues.WEBHOOKS},
                "webhooks.tasks.sweep_deliveries_task": {"queue": job_queues.MAINTENANCE},
                "webhooks.tasks.cleanup_deliveries_task": {"queue": job_queues.MAINTENANCE},
                "jobs.tasks.sweep_media_task": {"queue": job_queues.MAINTENANCE},
            },
            # Each stage task to its queue, derived from the job plans (jobs/plans) when Celery first routes.
            "jobs.plans.routing.route_task",
        ),
    }
