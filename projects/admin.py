"""Staff admin for projects (every owner's); deleting goes through the project service."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ops.replica import ReplicaChangeListMixin

from .models import Project
from .services import project_delete


@admin.register(Project)
class ProjectAdmin(ReplicaChangeListMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "id", "created_at", "updated_at")
    list_filter = (("created_at", admin.DateFieldListFilter),)
    search_fields = ("id", "name", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = ("id", "created_at", "updated_at")
    raw_id_fields = ("owner",)

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        project_delete(project=obj)  # cancels its unfinished jobs and removes their files

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        for project in queryset:
            project_delete(project=project)
