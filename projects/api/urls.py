"""Routes of the projects API; each works with and without the trailing slash."""
from __future__ import annotations

from api.routing import slash_optional

from .views import ProjectDetailView, ProjectListCreateView

urlpatterns = [
    *slash_optional("api/projects/", ProjectListCreateView.as_view(), "api-project-list"),
    *slash_optional("api/projects/<str:project_id>/", ProjectDetailView.as_view(), "api-project-detail"),
]
