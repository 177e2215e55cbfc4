"""API views that belong to no app: POST /api/auth/token/ and the OpenAPI schema."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response

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


class CachedSchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, generating the schema once per process (and API version).

    Generating walks every view and serializer (hundreds of milliseconds of CPU) and the endpoint is open
    to anonymous clients: uncached, a loop of GET /api/schema/ kept a web process busy. The URLs and
    serializers cannot change while a process runs, so neither can the schema.
    """

    _schemas: dict[str | None, dict] = {}

    def _get_schema_response(self, request: Any) -> Response:
        version = self.api_version or request.version or self._get_version_parameter(request)
        schema = self._schemas.get(version)
        if schema is None:
            generator = self.generator_class(urlconf=self.urlconf, api_version=version, patterns=self.patterns)
            schema = self._schemas.setdefault(version, generator.get_schema(request=request, public=self.serve_public))
        return Response(data=schema,
                        headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, version)}"'})
