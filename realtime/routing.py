"""Websocket URL routes (with or without the trailing slash, as CONTRACT.md promises)."""
from __future__ import annotations

from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(r"^ws/jobs/(?P<job_id>[^/]+)/?$", consumers.JobConsumer.as_asgi()),
    re_path(r"^ws/projects/(?P<project_id>[^/]+)/?$", consumers.ProjectConsumer.as_asgi()),
]
