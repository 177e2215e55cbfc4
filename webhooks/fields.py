"""The webhook fields of POST /api/jobs/ (CONTRACT.md "Webhooks"): checked shapes, no side effects."""
from __future__ import annotations

from rest_framework import serializers

from .guard import UrlRefused, check_webhook_url
from .models import DEFAULT_EVENTS, EVENTS


class WebhookUrlField(serializers.URLField):
    """An http(s) URL that leads to a public address (checked after DNS resolution)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 2000)
        super().__init__(**kwargs)

    def run_validation(self, data: object = serializers.empty) -> str | None:
        url = super().run_validation(data)  # the URL's shape first, then where it leads
        if url is None:
            return None
        try:
            check_webhook_url(url)
        except UrlRefused as exc:
            raise serializers.ValidationError(f"Refused: {exc}") from None
        return url


class WebhookEventsField(serializers.ListField):
    """A non-empty subset of start, progress, artifact, completed (default: completed)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(child=serializers.ChoiceField(choices=EVENTS), allow_empty=False, **kwargs)

    def to_internal_value(self, data: object) -> list[str]:
        # Checked here rather than per item, so errors are one flat list (the API's error shape) not {index: …}.
        allowed = ", ".join(EVENTS)
        if not isinstance(data, list) or not data:
            raise serializers.ValidationError(f"Give a non-empty list of events; allowed: {allowed}.")
        unknown = [str(item) for item in data if not isinstance(item, str) or item not in EVENTS]
        if unknown:
            raise serializers.ValidationError(f'"{unknown[0]}" is not a webhook event; allowed: {allowed}.')
        return [name for name in EVENTS if name in data]  # one of each, in a fixed order


def default_events() -> list[str]:
    return list(DEFAULT_EVENTS)
