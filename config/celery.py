"""The Celery app `config`: configuration comes from Django settings under the CELERY_ namespace."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _connect_readiness_probe(sender: Celery, **kwargs: object) -> None:
    """Touch $WORKER_READY_FILE once the worker consumes (a readiness probe for supervisors and tests)."""
    from celery.signals import worker_ready, worker_shutdown

    ready_file = os.environ.get("WORKER_READY_FILE")
    if not ready_file:
        return

    @worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        with open(ready_file, "w") as handle:
            handle.write(str(os.getpid()))

    @worker_shutdown.connect(weak=False)
    def _gone(**_: object) -> None:
        try:
            os.unlink(ready_file)
        except FileNotFoundError:
            pass
