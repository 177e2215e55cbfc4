"""API views that belong to no app: POST /api/auth/token/."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser

from .parsers import LimitedJSONParser
from .schema import error_responses


@extend_schema(
    summary="Exchange a username and password for an API token",
    request=AuthTokenSerializer,
    responses={200: inline_serializer("Token", fields={"token": serializers.CharField()}),
               **error_responses(400, 413, 415)},
    auth=[],
)
class ObtainTokenView(ObtainAuthToken):
    """DRF's token view, with our body limit and no session authentication (so no CSRF to trip on)."""

    authentication_classes: list = []
    parser_classes = (LimitedJSONParser, FormParser)
