from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self) -> None:
        from jobs import listeners

        from . import celery_hooks, publish

        # After jobs' dispatcher (INSTALLED_APPS order): every committed event is pushed to its groups.
        listeners.register_listener(publish.on_event_committed)
        celery_hooks.connect()

        from . import reauth

        reauth.connect_signals()  # open sockets re-authorise when a token, user, session or owner changes
