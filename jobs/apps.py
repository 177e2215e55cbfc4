from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"

    def ready(self) -> None:
        from celery.signals import worker_ready, worker_shutdown

        from . import capacity, dispatch, listeners

        # First listener: a committed `queued` or terminal event runs admission; `cancelled` stops the tasks.
        listeners.register_listener(dispatch.on_event_committed)
        # Each worker announces its queues and pool size: admission's slots (jobs/capacity.py).
        worker_ready.connect(self._announce_capacity, weak=False, dispatch_uid="jobs.capacity.announce")
        worker_shutdown.connect(capacity.stop_announcing, weak=False, dispatch_uid="jobs.capacity.withdraw")
        self._warm_up_store_in_workers()

    @staticmethod
    def _announce_capacity(sender: object = None, **_: object) -> None:
        from . import capacity

        capacity.start_announcing(sender)

    @staticmethod
    def _warm_up_store_in_workers() -> None:
        from celery.signals import worker_init, worker_process_init

        from .store import warm_up

        for signal in (worker_init, worker_process_init):
            signal.connect(warm_up, weak=False, dispatch_uid=f"jobs.store.warm_up.{signal.name}")
