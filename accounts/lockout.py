"""The answer to a login attempt while its username or address is locked out (django-axes)."""
from __future__ import annotations

import math
from typing import Any

from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: dict | None = None) -> HttpResponse:
    """429 with Retry-After: JSON for API paths, the login page's message elsewhere (AXES_LOCKOUT_CALLABLE)."""
    from api.errors import wants_json

    cool_off = get_cool_off(request)
    retry_after = max(1, math.ceil(cool_off.total_seconds())) if cool_off else None
    message = "Too many failed login attempts; try again later."
    if retry_after:
        message = f"Too many failed login attempts; try again in {retry_after} seconds."
    if wants_json(request):
        response: HttpResponse = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": message}, status=429)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response
