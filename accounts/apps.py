from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Logins and accounts: login throttling (django-axes), the user and API-token admin."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from .signals import connect_token_revocation

        connect_token_revocation()
