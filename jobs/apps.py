from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"

    def ready(self) -> None:
        from . import dispatch, listeners

        # First listener: a committed `queued` or `cancelled` event dispatches or stops the job's tasks.
        listeners.register_listener(dispatch.on_event_committed)
