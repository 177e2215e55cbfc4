"""Staff see every delivery and can send chosen ones again ("redeliver", same webhook-id)."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ops.replica import ReplicaChangeListMixin

from .models import WebhookDelivery
from .services import deliveries_redeliver


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReplicaChangeListMixin, admin.ModelAdmin):
    list_display = ["webhook_id", "job", "seq", "event", "state", "attempt", "status_code", "next_attempt_at",
                    "created_at"]
    list_filter = ["state", "event"]
    search_fields = ["webhook_id", "=job__id", "url"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["redeliver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Redeliver (same webhook-id, a fresh set of attempts)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        from .tasks import deliver_job_webhooks_task

        job_ids = deliveries_redeliver(delivery_ids=list(queryset.values_list("pk", flat=True)))
        for job_id in job_ids:
            try:
                deliver_job_webhooks_task.apply_async(args=[job_id], retry=False)
            except Exception:  # the broker is down: the periodic sweep sends them
                pass
        self.message_user(request, f"{queryset.count()} deliveries will be sent again.", messages.SUCCESS)
