"""JSON request parsing with the body-size limit DRF would otherwise skip."""
from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than the limit of {limit} bytes.")


def max_body_bytes() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)


class LimitedJSONParser(JSONParser):
    """JSONParser that enforces DATA_UPLOAD_MAX_MEMORY_SIZE.

    DRF reads JSON straight from the request stream, so Django's own limit (checked only by
    `request.body` and form parsing) never applies to it; without this a client could post gigabytes.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = max_body_bytes()
        if not limit:
            return super().parse(stream, media_type, parser_context)
        request = (parser_context or {}).get("request")
        if request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except (TypeError, ValueError):
                declared = 0
            if declared > limit:
                raise RequestTooLarge(limit)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(limit)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_reject_constant)
            # A lone surrogate ("\\ud800") parses fine but cannot be stored as UTF-8 by the database.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
        return data


def _reject_constant(value: str) -> Any:
    # NaN/Infinity are not JSON; accepting them would put values PostgreSQL's jsonb refuses into params.
    raise ValueError(f"{value} is not valid JSON")
