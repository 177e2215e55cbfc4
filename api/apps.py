from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "API"

    def ready(self) -> None:
        from .authentication import connect_token_cache_signals

        connect_token_cache_signals()
