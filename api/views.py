"""API views that belong to no app: POST /api/auth/token/."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken

from .parsers import LimitedJSONParser
from .schema import error_responses


@extend_schema(
    summary="Exchange a username and password for an API token",
    description="Repeated failures for one username or from one address are refused with 429 for a while.",
    request=AuthTokenSerializer,
    responses={200: inline_serializer("Token", fields={"token": serializers.CharField()}),
               **error_responses(400, 413, 415, 429)},
    auth=[],
)
class ObtainTokenView(ObtainAuthToken):
    """DRF's token view: JSON only under our body limit, no session authentication (so no CSRF to trip on),
    and login throttling."""

    authentication_classes: list = []
    # JSON only: DRF's FormParser reads a form body whole, past any limit of ours.
    parser_classes = (LimitedJSONParser,)

    def get_serializer_context(self) -> dict[str, Any]:
        # django-axes marks a locked-out attempt on Django's request, which its middleware turns into the
        # 429; DRF's Request wrapper would keep the mark to itself and the client would see a plain 400.
        return {**super().get_serializer_context(), "request": self.request._request}
