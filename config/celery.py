"""The Celery app `config`: configuration comes from Django settings under the CELERY_ namespace.

Its signal hooks (readiness file, kept database connections, task log lines) live in ops/celery_signals.py,
connected by OpsConfig.ready() when the worker sets Django up.
"""
from __future__ import annotations

import os

from celery import Celery

from patches import kombu_redis_restore

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A Redis worker requeues what it held when its connection broke once it has reconnected (a Sentinel failover).
kombu_redis_restore.install(app)


def __getattr__(name: str) -> object:
    """`config.celery.BaseTask` (the job-aware task base, jobs/basetask.py), imported on first use: importing
    it here at once would load Django models while the Celery app itself is being configured."""
    if name == "BaseTask":
        from jobs.basetask import BaseTask

        return BaseTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
