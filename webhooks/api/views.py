"""The caller's signing secret and a job's delivery log."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from api.schema import READ_ERRORS, error_responses
from jobs.api.views import JOB_ID, JobObjectMixin

from ..models import WebhookDelivery
from ..secrets import secret_get_or_create, secret_rotate
from .serializers import WebhookDeliverySerializer, WebhookSecretSerializer


@extend_schema(summary="Your webhook signing secret", responses={200: WebhookSecretSerializer,
                                                                 **error_responses(401)})
class WebhookSecretView(generics.GenericAPIView):
    serializer_class = WebhookSecretSerializer

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"secret": secret_get_or_create(user_id=request.user.pk).secret})


@extend_schema(summary="Make a new signing secret (the previous one keeps signing for 24 h)", request=None,
               responses={200: WebhookSecretSerializer, **error_responses(401, 403)})
class WebhookSecretRotateView(generics.GenericAPIView):
    serializer_class = WebhookSecretSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"secret": secret_rotate(user_id=request.user.pk).secret})


@extend_schema(summary="A job's webhook deliveries, in seq order", parameters=[JOB_ID],
               responses={200: WebhookDeliverySerializer(many=True), **error_responses(400, *READ_ERRORS)})
class JobDeliveriesView(JobObjectMixin, generics.ListAPIView):
    serializer_class = WebhookDeliverySerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        job = self.get_object()  # first, so another user's job is "not found"
        return WebhookDelivery.objects.filter(job_id=job.pk).order_by("seq")
