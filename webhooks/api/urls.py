"""Routes of the webhooks API; each works with and without the trailing slash."""
from __future__ import annotations

from api.routing import slash_optional

from .views import JobDeliveriesView, WebhookSecretRotateView, WebhookSecretView

urlpatterns = [
    *slash_optional("api/webhooks/secret/", WebhookSecretView.as_view(), "api-webhook-secret"),
    *slash_optional("api/webhooks/secret/rotate/", WebhookSecretRotateView.as_view(), "api-webhook-secret-rotate"),
    *slash_optional("api/jobs/<str:job_id>/deliveries/", JobDeliveriesView.as_view(), "api-job-deliveries"),
]
