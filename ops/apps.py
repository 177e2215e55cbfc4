from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Celery workers run Django's setup (celery's Django fix-up) before they consume, so the hooks are
        # connected before the first worker or task signal fires; web processes connect them too (eager
        # tasks in tests), where the worker-only ones never fire.
        from . import celery_signals

        celery_signals.connect()
