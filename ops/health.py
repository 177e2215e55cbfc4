"""GET /healthz: the answer of the checks in ops/health_checks.py; 503 when something is down."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .health_checks import check_database, check_redis, count_live_workers

HEALTH_STATES = ("ok", "down")

HEALTH_RESPONSE = inline_serializer("Health", fields={
    "status": serializers.ChoiceField(choices=HEALTH_STATES),
    "database": serializers.ChoiceField(choices=HEALTH_STATES),
    "redis": serializers.ChoiceField(choices=HEALTH_STATES),
    "workers": serializers.IntegerField(allow_null=True, help_text="Live Celery workers (null: unknown)."),
    "down": serializers.ListField(child=serializers.CharField(), help_text="What is down, if anything."),
})


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Health of the database, Redis and the workers",
        auth=[],
        responses={200: HEALTH_RESPONSE, 503: OpenApiResponse(HEALTH_RESPONSE, description="Something is down.")},
    )
    def get(self, request: Request) -> Response:
        database, redis_ok = check_database(), check_redis()
        workers = count_live_workers() if redis_ok else None
        down = [name for name, ok in (("database", database), ("redis", redis_ok)) if not ok]
        minimum = int(settings.HEALTHZ["MIN_WORKERS"])
        if minimum and (workers or 0) < minimum:
            down.append("workers")
        body = {
            "status": "down" if down else "ok",
            "database": "ok" if database else "down",
            "redis": "ok" if redis_ok else "down",
            "workers": workers,
            "down": down,
        }
        return Response(body, status=503 if down else 200)
