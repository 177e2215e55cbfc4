"""A user's signing secret and the log of webhook deliveries (one row per job event delivered)."""
from __future__ import annotations

from django.conf import settings
from django.db import models

EVENTS = ("start", "progress", "artifact", "completed")  # webhook_events_filter values; type = "job.<event>"
DEFAULT_EVENTS = ["completed"]


class WebhookSecret(models.Model):
    """The key deliveries to a user's URLs are signed with; after a rotation the previous one signs too."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"webhook secret of {self.user_id}"


class WebhookDelivery(models.Model):
    PENDING = "pending"  # waiting for its first attempt, a retry, or earlier deliveries of its job
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: attempts used up, or the address is refused
    STATE_CHOICES = [(PENDING, "Pending"), (DELIVERED, "Delivered"), (FAILED, "Failed (given up)")]

    # The Standard Webhooks `webhook-id`: the same on every attempt, so receivers can drop duplicates.
    webhook_id = models.CharField(max_length=64, unique=True)
    job = models.ForeignKey("jobs.GenerationJob", on_delete=models.CASCADE, related_name="webhook_deliveries")
    seq = models.PositiveIntegerField()  # the job event it reports; deliveries of a job go out in seq order
    event = models.CharField(max_length=16)  # start, progress, artifact or completed
    url = models.URLField(max_length=2000)
    body = models.TextField()  # the exact JSON sent (signatures cover these bytes)
    state = models.CharField(max_length=16, choices=STATE_CHOICES, default=PENDING)
    attempt = models.PositiveIntegerField(default=0)  # attempts made so far
    max_attempts = models.PositiveIntegerField()  # raised by an admin "redeliver"
    status_code = models.PositiveIntegerField(null=True, blank=True)  # of the last attempt
    error = models.TextField(blank=True, default="")  # of the last attempt
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # null once delivered or given up
    # A sender holds the job's head delivery until then (a crashed sender's claim simply runs out).
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="webhookdelivery_job_seq_unique")]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhookdelivery_due_idx"),
            models.Index(fields=["created_at"], name="webhookdelivery_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} job.{self.event} #{self.seq} ({self.state})"
