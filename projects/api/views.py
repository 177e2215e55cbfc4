"""Thin views over projects.services and projects.selectors (owner-scoped)."""
from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.serializers import BaseSerializer

from api import idempotency
from api.schema import READ_ERRORS, WRITE_ERRORS, error_responses
from ops.replica import ReplicaListMixin
from projects import selectors, services
from projects.models import Project

from .serializers import ProjectSerializer

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                              description="The project's id.")


@extend_schema_view(
    get=extend_schema(summary="List your projects, newest first",
                      responses={200: ProjectSerializer(many=True), **error_responses(400, 401, 404)}),
    post=extend_schema(summary="Create a project",
                       parameters=idempotency.SCHEMA_PARAMETERS,
                       responses={201: ProjectSerializer, **error_responses(400, 401, 403, 413, 415),
                                  **idempotency.SCHEMA_RESPONSES}),
)
class ProjectListCreateView(ReplicaListMixin, idempotency.IdempotentCreateMixin, generics.ListCreateAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self) -> QuerySet[Project]:
        return selectors.projects_for_user(user=self.request.user)

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.instance = services.project_create(owner=self.request.user, **serializer.validated_data)


@extend_schema_view(
    get=extend_schema(summary="One of your projects", parameters=[PROJECT_ID],
                      responses={200: ProjectSerializer, **error_responses(*READ_ERRORS)}),
    patch=extend_schema(summary="Change a project's name or script", parameters=[PROJECT_ID],
                        responses={200: ProjectSerializer, **error_responses(*WRITE_ERRORS)}),
    delete=extend_schema(summary="Delete a project: its unfinished jobs are cancelled first",
                         parameters=[PROJECT_ID], responses={204: None, **error_responses(401, 403, 404)}),
)
class ProjectDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = ProjectSerializer
    # PUT is not part of the contract: a partial update is the only update.
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> Project:
        project = selectors.project_get_for_user(project_id=self.kwargs["project_id"], user=self.request.user)
        self.check_object_permissions(self.request, project)
        return project

    def perform_update(self, serializer: BaseSerializer) -> None:
        serializer.instance = services.project_update(project=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Project) -> None:
        services.project_delete(project=instance)
