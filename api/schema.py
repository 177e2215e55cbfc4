"""OpenAPI: the error bodies shared by every view's extend_schema, and the schema's preprocessing hook."""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """`{"detail": "…"}`: every error that is not about a particular field."""

    detail = serializers.CharField()

    class Meta:
        ref_name = "Error"


class ValidationErrorSerializer(serializers.Serializer):
    """`{field: [reason, …]}`; an unparseable body answers `{"detail": reason}` with the same status."""

    class Meta:
        ref_name = "ValidationError"


class ValidationErrorExtension(OpenApiSerializerExtension):
    target_class = ValidationErrorSerializer

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            "type": "object",
            "description": "Each key names a field (or `detail`, `non_field_errors`); the value gives the reason.",
            "additionalProperties": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
        }


_DESCRIPTIONS = {
    400: "Bad input: the body names each field and the reason.",
    401: "Not authenticated (send `Authorization: Token <key>` or a session cookie).",
    403: "Authenticated but refused (e.g. a missing CSRF token on a session request).",
    404: "Not found, or not yours.",
    409: "The job's status does not allow this action.",
    413: "The request body is larger than the configured limit.",
    415: "The request body is not JSON.",
    429: "Too many requests; see the Retry-After header.",
    503: "A service this request needs is down for the moment; see the Retry-After header.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """extend_schema `responses` entries for the given error status codes."""
    return {
        code: OpenApiResponse(ValidationErrorSerializer if code == 400 else ErrorSerializer,
                              description=_DESCRIPTIONS[code])
        for code in codes
    }


# What reading an owned object can answer, and what writing one can.
READ_ERRORS = (401, 404)
WRITE_ERRORS = (400, 401, 403, 404, 413, 415)


# Paths whose documented form has no trailing slash (every other path is documented with one).
NO_SLASH_CANONICAL = frozenset({"/healthz"})


def drop_duplicate_slash_forms(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """drf-spectacular preprocessing hook: document each path once, in its canonical slash form."""
    paths = {endpoint[0] for endpoint in endpoints}
    kept = []
    for endpoint in endpoints:
        path_ = endpoint[0]
        if path_.endswith("/") and path_.rstrip("/") in NO_SLASH_CANONICAL:
            continue
        if not path_.endswith("/") and f"{path_}/" in paths and path_ not in NO_SLASH_CANONICAL:
            continue
        kept.append(endpoint)
    return kept
