"""Standard Webhooks headers for one attempt, signed with the `standardwebhooks` reference code."""
from __future__ import annotations

from datetime import datetime, timezone

from standardwebhooks import Webhook


def signed_headers(*, webhook_id: str, body: str, secrets: list[str], now: datetime | None = None) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature (one `v1,…` per secret, space-separated)."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    signatures = [Webhook(secret).sign(webhook_id, moment, body) for secret in secrets]
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
