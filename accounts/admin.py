"""Staff admin for users and API tokens: deletes go through the services; token keys are never listed."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from ops.replica import ReplicaChangeListMixin

from .models import ApiToken
from .services import user_delete

User = get_user_model()


class AccountUserAdmin(ReplicaChangeListMixin, UserAdmin):
    """Django's user admin; deleting a user cancels their jobs and removes their files first."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            user_delete(user=user)


class MaskedTokenAdmin(ReplicaChangeListMixin, TokenAdmin):
    """DRF's token admin without the keys in clear: anyone with a glance at the list could use them."""

    list_display = ("masked_key", "user", "created")

    @admin.display(description="key")
    def masked_key(self, obj: ApiToken) -> str:
        return f"{obj.key[:4]}…"

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:  # shown once, to the staff member who made it for the user
            self.message_user(request, f"New API token for {obj.user}: {obj.key}", messages.WARNING)


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AccountUserAdmin)
admin.site.unregister(TokenProxy)
admin.site.register(ApiToken, MaskedTokenAdmin)
