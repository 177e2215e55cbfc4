from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"

    def ready(self) -> None:
        from . import listeners

        listeners.register_default_listeners()

        # The API's token cache forgets deleted tokens and changed users (config/api.py).
        from config.api import connect_token_cache_signals

        connect_token_cache_signals()
