"""URL routes: admin, auth pages, API, health."""
from django.contrib import admin
from django.urls import include, path

from jobs import views as job_views
from projects import views as project_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    # --- pages ---
    path("", project_views.project_list, name="project-list"),
    path("projects/<uuid:project_id>/", project_views.project_detail, name="project-detail"),
    path("jobs/<uuid:job_id>/", job_views.job_detail, name="job-detail"),
]
