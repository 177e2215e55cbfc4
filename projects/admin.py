"""Staff admin for projects (every owner's)."""
from __future__ import annotations

from django.contrib import admin

from .models import Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "id", "created_at", "updated_at")
    list_filter = (("created_at", admin.DateFieldListFilter),)
    search_fields = ("id", "name", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = ("id", "created_at", "updated_at")
    raw_id_fields = ("owner",)
