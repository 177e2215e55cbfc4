"""GET /metrics: Prometheus text for staff sessions or `Authorization: Bearer $METRICS_TOKEN`."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from . import metrics


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _deny(status: int, detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Staff or the configured token only: the numbers reveal how busy the service is."""
    configured = str(getattr(settings, "METRICS_TOKEN", "") or "")
    token = _bearer_token(request)
    if token is not None:
        # compare_digest: the time taken does not tell how much of a guessed token was right.
        if not (configured and hmac.compare_digest(token.encode(), configured.encode())):
            return _deny(401, "Invalid metrics token.")
    elif not request.user.is_authenticated:
        return _deny(401, "Authentication credentials were not provided.")
    elif not (request.user.is_active and request.user.is_staff):
        return _deny(403, "Only staff can read metrics.")
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)
