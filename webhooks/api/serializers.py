"""Shapes of the webhooks API and of the delivery body (a schema component for clients)."""
from __future__ import annotations

from rest_framework import serializers

from jobs.api.serializers import JobSerializer

from ..models import EVENTS, WebhookDelivery


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text='Your signing secret ("whsec_" + base64); verify deliveries with it.')


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["webhook_id", "event", "attempt", "status_code", "error", "created_at", "next_attempt_at"]
        read_only_fields = fields


class WebhookPayloadSerializer(serializers.Serializer):
    """The JSON body of every webhook delivery (Standard Webhooks; headers webhook-id/-timestamp/-signature)."""

    type = serializers.ChoiceField(choices=[f"job.{name}" for name in EVENTS])
    timestamp = serializers.DateTimeField(help_text="When the event was recorded.")
    data = JobSerializer(help_text="The job as GET /api/jobs/{id}/ shows it, at the moment of the event.")
