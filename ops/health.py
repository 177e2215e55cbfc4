"""GET /healthz: the answer of the checks in ops/health_checks.py; 503 when something is down."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .health_checks import (broker_is_amqp, check_amqp_broker, check_database, check_redis, check_store,
                            count_live_workers)

HEALTH_STATES = ("ok", "down")

HEALTH_RESPONSE = inline_serializer("Health", fields={
    "status": serializers.ChoiceField(choices=HEALTH_STATES),
    "database": serializers.ChoiceField(choices=HEALTH_STATES),
    "redis": serializers.ChoiceField(choices=HEALTH_STATES, help_text="Every Redis role (down if any one is)."),
    "redis_roles": serializers.DictField(child=serializers.ChoiceField(choices=HEALTH_STATES),
                                         help_text="Each Redis role by name: broker (when Redis), channels, locks."),
    "broker": serializers.ChoiceField(choices=HEALTH_STATES, help_text="Celery's broker: RabbitMQ or Redis."),
    "broker_type": serializers.ChoiceField(choices=("rabbitmq", "redis")),
    "broker_error": serializers.CharField(allow_null=True, help_text="Why the broker is down (null when ok)."),
    "store": serializers.ChoiceField(choices=HEALTH_STATES, help_text="The artifact store (ARTIFACT_STORAGE)."),
    "store_error": serializers.CharField(allow_null=True, help_text="Why the store is down (null when ok)."),
    "workers": serializers.IntegerField(allow_null=True, help_text="Live Celery workers (null: unknown)."),
    "down": serializers.ListField(child=serializers.CharField(), help_text="What is down, if anything."),
})


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Health of the database, Redis, the broker, the artifact store and the workers",
        auth=[],
        responses={200: HEALTH_RESPONSE, 503: OpenApiResponse(HEALTH_RESPONSE, description="Something is down.")},
    )
    def get(self, request: Request) -> Response:
        database, redis, store_error = check_database(), check_redis(), check_store()
        broker_type, broker_error = _broker(redis)
        # The broadcast ping would wait on a broker that is down: the count is unknown then.
        workers = count_live_workers() if broker_error is None else None
        down = [name for name, ok in (("database", database), ("redis", all(redis.values())),
                                      ("broker", broker_error is None), ("store", store_error is None)) if not ok]
        minimum = int(settings.HEALTHZ["MIN_WORKERS"])
        if minimum and (workers or 0) < minimum:
            down.append("workers")
        body = {
            "status": "down" if down else "ok",
            "database": _state(database),
            "redis": _state(all(redis.values())),
            "redis_roles": {name: _state(ok) for name, ok in redis.items()},
            "broker": _state(broker_error is None),
            "broker_type": broker_type,
            "broker_error": broker_error,
            "store": _state(store_error is None),
            "store_error": store_error,
            "workers": workers,
            "down": down,
        }
        return Response(body, status=503 if down else 200)


def _broker(redis: dict[str, bool]) -> tuple[str, str | None]:
    """(broker type, why it is down or None): RabbitMQ is connected to, a Redis broker is its role's PING."""
    if broker_is_amqp():
        return "rabbitmq", check_amqp_broker()
    return "redis", None if redis.get("broker", True) else "its Redis does not answer PING (redis_roles.broker)"


def _state(ok: bool) -> str:
    return "ok" if ok else "down"
