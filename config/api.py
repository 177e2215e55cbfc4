"""DRF glue shared by every API module: error mapping, JSON fallbacks, parsing limits, pagination, throttles.

Domain exceptions are mapped to HTTP answers here and nowhere else (STYLE.md): a view only calls a
service or selector and lets JobNotFound / InvalidTransition / InvalidJobInput travel up.
"""
from __future__ import annotations

import copy
import json
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from jobs.exceptions import InvalidJobInput, InvalidTransition, JobNotFound, ProjectNotFound

logger = logging.getLogger(__name__)

JSON_PATH_PREFIXES = ("/api/", "/api", "/healthz")


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication that remembers key -> user for API_TOKEN_CACHE_S seconds in this process.

    The token lookup was one of the two database round trips (and about a quarter of the CPU) of a
    GET /api/jobs/{id}/. A deleted token or a deactivated user is refused at once by the process that made
    the change (signals below) and by every other process within API_TOKEN_CACHE_S; 0 turns the cache off.
    Each request gets its own copy of the user object.
    """

    MAX_ENTRIES = 10_000

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        ttl = float(getattr(settings, "API_TOKEN_CACHE_S", 0) or 0)
        if ttl <= 0:
            return super().authenticate_credentials(key)
        now = time.monotonic()
        hit = _token_cache.get(key)
        if hit is not None and hit[0] > now:
            return copy.copy(hit[1]), hit[2]
        user, token = super().authenticate_credentials(key)  # raises AuthenticationFailed as before
        with _token_cache_lock:
            if len(_token_cache) >= self.MAX_ENTRIES:
                for old in list(_token_cache)[: self.MAX_ENTRIES // 10]:  # oldest first (insertion order)
                    _token_cache.pop(old, None)
            _token_cache[key] = (now + ttl, user, token)
        return copy.copy(user), token


_token_cache: dict[str, tuple[float, Any, Any]] = {}
_token_cache_lock = threading.Lock()


def forget_token(key: str | None = None, user_id: Any = None) -> None:
    """Drop cached entries for a token key, or for every token of a user."""
    with _token_cache_lock:
        if key is not None:
            _token_cache.pop(key, None)
        if user_id is not None:
            for cached_key, (_, user, _) in list(_token_cache.items()):
                if user.pk == user_id:
                    _token_cache.pop(cached_key, None)


def forget_all_tokens() -> None:
    with _token_cache_lock:
        _token_cache.clear()


def _on_token_deleted(sender: Any, instance: Any, **_: Any) -> None:
    forget_token(key=instance.key)


def _on_user_saved(sender: Any, instance: Any, **_: Any) -> None:
    forget_token(user_id=instance.pk)  # is_active and friends are re-read on the next request


def connect_token_cache_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save
    from rest_framework.authtoken.models import Token

    post_delete.connect(_on_token_deleted, sender=Token, dispatch_uid="config.api.token_deleted")
    post_save.connect(_on_user_saved, sender=get_user_model(), dispatch_uid="config.api.user_saved")
    post_delete.connect(_on_user_saved, sender=get_user_model(), dispatch_uid="config.api.user_deleted")


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


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler plus our domain errors; anything left unmapped is a bug and becomes a 500."""
    # Imported here: this module is named in REST_FRAMEWORK, which rest_framework.views reads on import.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, (JobNotFound, ProjectNotFound)):
        kind = "Job" if isinstance(exc, JobNotFound) else "Project"
        return Response({"detail": f"{kind} not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, InvalidTransition):
        return Response({"detail": exc.reason}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, InvalidJobInput):
        return Response({exc.field: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"Request body is larger than the limit of {max_body_bytes()} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "Bad request."}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


def single_query_value(request: Any, name: str) -> str | None:
    """The one value of query parameter `name` (None if absent); a repeated parameter is a 400 naming it."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise exceptions.ValidationError({name: ["Give this parameter once."]})
    return values[0]


def _positive_int(request: Any, name: str) -> int | None:
    raw = single_query_value(request, name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise exceptions.ValidationError({name: ["Must be a positive integer."]})
    return int(raw)


class JobsPagination(PageNumberPagination):
    """`?page=N&page_size=M` answering {"count","next","previous","results"}; page_size is capped at 100.

    Unlike DRF's default, a malformed page or page_size is a 400 naming it rather than silently ignored;
    a page past the end stays DRF's 404.
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request: Any) -> int:
        wanted = _positive_int(request, self.page_size_query_param)
        return self.page_size if wanted is None else min(wanted, self.max_page_size)

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list | None:
        _positive_int(request, self.page_query_param)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Results per page (default {self.page_size}, at most {self.max_page_size})."
        return parameters


class JobCreateThrottle(SimpleRateThrottle):
    """Per-user limit on job creation; the rate is read on every request so tests and env can change it.

    The cache is best-effort: if it is unreachable the request is allowed (a throttle must not turn an
    outage of Redis into 500s for every job creation).
    """

    scope = "job_create"

    def get_rate(self) -> str | None:
        return settings.API_JOB_CREATE_RATE or None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("job-create throttle cache unavailable; allowing the request", exc_info=True)
            return True


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """Never 406: file downloads are asked for with `Accept: video/*` and similar by media elements."""

    def select_renderer(self, request: Any, renderers: list, format_suffix: str | None = None) -> tuple:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            return renderers[0], renderers[0].media_type


# --- Django's own error views: JSON for API paths, the normal pages elsewhere ---------------------------

def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(JSON_PATH_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html") -> HttpResponse:
    if wants_json(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": f"Request body is larger than the limit of {max_body_bytes()} bytes."},
                                status=413)
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception, template_name)


def permission_denied(request: HttpRequest, exception: Exception, template_name: str = "403.html") -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception, template_name)


def page_not_found(request: HttpRequest, exception: Exception, template_name: str = "404.html") -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception, template_name)


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request, template_name)


# --- Routing helpers ------------------------------------------------------------------------------------

# Paths whose documented form has no trailing slash (every other path is documented with one).
NO_SLASH_CANONICAL = frozenset({"/healthz"})


def slash_optional(route: str, view: Any, name: str) -> list:
    """The same view at `route/` and `route` (no redirect: a redirected POST would lose its body)."""
    from django.urls import path

    base = route.rstrip("/")
    return [path(f"{base}/", view, name=name), path(base, view, name=f"{name}-noslash")]


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


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Catch-all for unknown /api/ paths: JSON 404 even with DEBUG on (Django's debug 404 is HTML)."""
    return JsonResponse({"detail": "Not found."}, status=404)


api_not_found.csrf_exempt = True  # type: ignore[attr-defined]  # a 404 needs no CSRF check
