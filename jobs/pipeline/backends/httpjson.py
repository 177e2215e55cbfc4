"""A JSON POST over urllib that maps every network failure to TransientError or PermanentError."""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from ..errors import PermanentError, TransientError

# Answers worth retrying: overload, rate limiting, request timeout, and every 5xx.
_RETRYABLE_STATUS = {408, 425, 429}


def post_json(url: str, payload: dict[str, Any], *, timeout: float, backend: str) -> Any:
    """POST `payload` as JSON and return the decoded JSON answer.

    TransientError: refused, unreachable, timed out, 5xx/429. PermanentError: other HTTP errors, non-JSON body.
    """
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "Accept": "application/json"}
    )
    raw = _exchange(request, url=url, timeout=timeout, backend=backend)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise PermanentError(f"{backend} returned a malformed answer (not JSON)", detail=raw[:500].decode("utf-8", "replace")) from exc


def _exchange(request: urllib.request.Request, *, url: str, timeout: float, backend: str) -> bytes:
    """Send the request and read the answer's body, mapping every failure to a Transient or PermanentError."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_body(exc)
        if exc.code >= 500 or exc.code in _RETRYABLE_STATUS:
            raise TransientError(f"{backend} is unavailable (HTTP {exc.code})", detail=detail) from exc
        raise PermanentError(f"{backend} rejected the request (HTTP {exc.code})", detail=detail) from exc
    except urllib.error.URLError as exc:
        # Refused connections, DNS failures and connect timeouts all arrive wrapped in URLError.
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise TransientError(f"{backend} timed out after {timeout:g} s", detail=str(reason)) from exc
        raise TransientError(f"{backend} is unreachable", detail=f"{url}: {reason}") from exc
    except TimeoutError as exc:  # read timeout once connected
        raise TransientError(f"{backend} timed out after {timeout:g} s", detail=url) from exc
    except (http.client.HTTPException, ConnectionError, OSError) as exc:
        # The server dropped the connection mid-answer.
        raise TransientError(f"{backend} closed the connection unexpectedly", detail=repr(exc)) from exc


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(500).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body is only diagnostic
        return ""
