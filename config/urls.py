"""URL routes: admin, auth pages, API, health."""
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView

from api.errors import api_not_found
from api.routing import slash_optional
from api.views import CachedSchemaView, ObtainTokenView
from jobs import views as job_views
from ops.health import HealthView
from ops.metrics_view import metrics_view
from projects import views as project_views

urlpatterns = [
    # --- API (every path with and without the trailing slash; see api/routing.py) ---
    *slash_optional("api/auth/token/", ObtainTokenView.as_view(), "api-token"),
    path("", include("projects.api.urls")),
    path("", include("jobs.api.urls")),
    path("", include("realtime.urls")),
    path("", include("webhooks.api.urls")),
    *slash_optional("api/schema/", CachedSchemaView.as_view(), "schema"),
    *slash_optional("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), "api-docs"),
    *slash_optional("healthz", HealthView.as_view(), "healthz"),
    re_path(r"^api(?:/.*)?$", api_not_found),
    # --- end API ---
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    # --- pages ---
    path("", project_views.project_list, name="project-list"),
    path("projects/<uuid:project_id>/", project_views.project_detail, name="project-detail"),
    path("jobs/<uuid:job_id>/", job_views.job_detail, name="job-detail"),
]

# JSON errors for /api/ paths, Django's pages elsewhere (api/errors.py).
handler400 = "api.errors.bad_request"
handler403 = "api.errors.permission_denied"
handler404 = "api.errors.page_not_found"
handler500 = "api.errors.server_error"
