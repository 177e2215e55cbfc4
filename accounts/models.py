"""API tokens as the admin shows them: never the key in clear."""
from __future__ import annotations

from rest_framework.authtoken.models import TokenProxy


class ApiToken(TokenProxy):
    """DRF's token (through its admin proxy, keyed by user) whose text is a masked key: the admin prints an
    object's text in page titles, delete confirmations and the admin log."""

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.key[:4]}… ({self.user})"
