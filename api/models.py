"""IdempotencyKey: one user's `Idempotency-Key` and the response it produced (api/idempotency.py)."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of method, path and the canonical JSON body: "the same request" means the same fingerprint.
    fingerprint = models.CharField(max_length=64)
    # Who is handling the first request right now; a request whose claim was taken over stores nothing.
    claim = models.UUIDField()
    claimed_at = models.DateTimeField()
    created_at = models.DateTimeField()  # the key expires IDEMPOTENCY_KEY_TTL_S after this
    # The first response, once the request finished with a 2xx; null while it is being handled.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    response_headers = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotencykey_user_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="idempotencykey_created_idx")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key} ({self.status_code or 'in flight'})"
