"""Per-user signing secrets: created on first use, rotated with an overlap during which both sign."""
from __future__ import annotations

import base64
import secrets as random_bytes
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .conf import webhook_settings
from .models import WebhookSecret

PREFIX = "whsec_"


def _new_secret() -> str:
    # Standard Webhooks secrets: "whsec_" + base64 of 24-64 random bytes.
    return PREFIX + base64.b64encode(random_bytes.token_bytes(32)).decode()


def secret_get_or_create(*, user_id: Any) -> WebhookSecret:
    """The user's secret row, made on first use."""
    row, _ = WebhookSecret.objects.get_or_create(user_id=user_id, defaults={"secret": _new_secret()})
    return row


def secret_rotate(*, user_id: Any) -> WebhookSecret:
    """A new current secret; the old one keeps signing for WEBHOOKS_SECRET_OVERLAP_S (24 h)."""
    secret_get_or_create(user_id=user_id)
    with transaction.atomic():
        row = WebhookSecret.objects.select_for_update().get(user_id=user_id)
        now = timezone.now()
        row.previous_secret, row.secret = row.secret, _new_secret()
        row.previous_valid_until = now + timedelta(seconds=webhook_settings().secret_overlap_s)
        row.rotated_at = now
        row.save(update_fields=["secret", "previous_secret", "previous_valid_until", "rotated_at"])
    return row


def signing_secrets(*, user_id: Any, now: datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with right now: the current one, and the previous during overlap."""
    row = secret_get_or_create(user_id=user_id)
    now = now or timezone.now()
    keys = [row.secret]
    if row.previous_secret and row.previous_valid_until and row.previous_valid_until > now:
        keys.append(row.previous_secret)
    return keys
