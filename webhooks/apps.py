from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"

    def ready(self) -> None:
        # Deliveries are produced only from committed job events (jobs/listeners.py), never from a save.
        from jobs.listeners import register_listener

        from .producer import on_event_committed

        register_listener(on_event_committed)
