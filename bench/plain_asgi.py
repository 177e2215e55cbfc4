"""The websocket baseline: a plain channels consumer (join the job's group, send one snapshot), token auth.

Served by `daphne bench.plain_asgi:application` with channels-redis's default RedisChannelLayer
(CHANNEL_LAYER_BACKEND set by bench/ws_idle.py); no ownership check, ping, resume or de-duplication.
"""
from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from realtime.middleware import TokenAuthMiddleware  # noqa: E402


@database_sync_to_async
def _snapshot(job_id: str) -> dict | None:
    from jobs.models import GenerationJob

    return GenerationJob.objects.filter(pk=job_id).values("status", "progress", "current_stage", "seq").first()


class PlainJobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        self.groups = [f"job_{job_id}"]
        await self.channel_layer.group_add(self.groups[0], self.channel_name)
        await self.accept()
        row = await _snapshot(job_id) or {}
        await self.send_json({"type": "status", "job_id": job_id, **row})

    async def job_status(self, event: dict) -> None:
        await self.send_json(event.get("payload") or {})


application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": TokenAuthMiddleware(URLRouter([re_path(r"^ws/jobs/(?P<job_id>[^/]+)/?$", PlainJobConsumer.as_asgi())])),
})
