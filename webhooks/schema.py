"""The delivery request as an OpenAPI webhook, so the payload is a schema component clients can generate from."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, OpenApiWebhook, extend_schema

from .api.serializers import WebhookPayloadSerializer

job_event_webhook = OpenApiWebhook(
    name="job-event",
    decorator=extend_schema(
        summary="A job event, POSTed to the job's webhook_url",
        description=(
            "Standard Webhooks: headers `webhook-id` (the same on every retry of one delivery), `webhook-timestamp` "
            "(Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of \"{id}.{timestamp}.{body}\">`, one per "
            "valid secret, space-separated). Answer 2xx within 10 s, or the delivery is retried."
        ),
        request=WebhookPayloadSerializer,
        responses={200: OpenApiResponse(description="Received; any 2xx status counts.")},
    ),
)


def webhooks_as_extension(result: dict, generator: object, **kwargs: object) -> dict:
    """drf-spectacular postprocessing hook: OpenAPI 3.0 has no `webhooks` key (3.1 does), so a 3.0 document
    carries it as `x-webhooks` (which Redoc shows); the payload stays a component under components/schemas."""
    if str(result.get("openapi", "")).startswith("3.0") and "webhooks" in result:
        result["x-webhooks"] = result.pop("webhooks")
    return result
