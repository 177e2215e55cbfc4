"""`Idempotency-Key` on creates (CONTRACT.md): a retried POST replays the first response, creating nothing.

Why a PostgreSQL table rather than Redis SET NX: the response is stored in the same transaction as the
object it describes, so a crash can never leave a created job whose key is forgotten (a retry would then
create a second one) or a key whose job was rolled back. The row is claimed (a unique (user, key) insert,
committed at once so every web process sees it) before the work starts; the work and the stored response
then commit together, and only if the claim is still ours. A claim whose process died is taken over after
IDEMPOTENCY_CLAIM_TIMEOUT_S; expired keys are deleted by `sweep_idempotency_keys_task` (maintenance).

Only a 2xx answer is remembered: a refused request created nothing, so the key is released and the client
may fix the body and retry with the same key.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from .models import IdempotencyKey
from .schema import ErrorSerializer

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255
# Response headers a replay repeats (Content-Type, Vary and Allow are set again by the replay itself).
KEPT_HEADERS = ("Location",)


class KeyInFlight(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A request with this Idempotency-Key is still being handled; retry in a moment."
    default_code = "idempotency_key_in_flight"


class KeyReusedWithOtherRequest(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was already used with a different request body."
    default_code = "idempotency_key_reused"


class _ClaimLost(Exception):
    """Our claim was taken over (we were presumed dead): roll our work back."""


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, None without one; a 400 naming the header when it is malformed."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_CHARS or not raw.isascii() or not raw.isprintable():
        raise exceptions.ValidationError(
            {HEADER: [f"Must be 1 to {MAX_KEY_CHARS} printable ASCII characters."]})
    return raw


def request_fingerprint(request: Request) -> str:
    """sha256 of the method, the path (trailing slash ignored) and the body's canonical JSON."""
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict (form data)
        data = dict(data.lists())
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=JSONEncoder)
    text = f"{request.method} {request.path.rstrip('/')}\n{body}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _expired_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S)


def _take_over(row: IdempotencyKey, *, fingerprint: str, token: uuid.UUID, fresh: bool) -> bool:
    """Claim an expired key (fresh: as if new) or a stale claim; False when someone else was quicker."""
    now = timezone.now()
    changes: dict[str, Any] = {"claim": token, "claimed_at": now}
    if fresh:
        changes.update(fingerprint=fingerprint, created_at=now, status_code=None, response_body="",
                       response_headers={})
    return IdempotencyKey.objects.filter(pk=row.pk, claim=row.claim).update(**changes) == 1


def idempotency_claim(*, user: Any, key: str, fingerprint: str) -> tuple[uuid.UUID | None, IdempotencyKey | None]:
    """(our claim token, None) when the request should run; (None, row) when it should be replayed.

    Raises KeyInFlight (409) while another request holds the key and KeyReusedWithOtherRequest (422)
    when the key was used for a different request.
    """
    token = uuid.uuid4()
    stale_before = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_CLAIM_TIMEOUT_S)
    for _ in range(3):  # a row released or swept between our insert and our read: try again
        now = timezone.now()
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint, claim=token,
                                              claimed_at=now, created_at=now)
            return token, None
        except IntegrityError:
            pass
        row = IdempotencyKey.objects.filter(user=user, key=key).first()
        if row is None:
            continue
        if row.created_at < _expired_before():
            if _take_over(row, fingerprint=fingerprint, token=token, fresh=True):
                return token, None
            continue
        if row.fingerprint != fingerprint:
            raise KeyReusedWithOtherRequest()
        if row.status_code is not None:
            return None, row
        if row.claimed_at < stale_before and _take_over(row, fingerprint=fingerprint, token=token, fresh=False):
            return token, None
        raise KeyInFlight()
    raise KeyInFlight()


def idempotency_release(*, user: Any, key: str, token: uuid.UUID) -> None:
    """Forget our claim: the request failed and created nothing."""
    IdempotencyKey.objects.filter(user=user, key=key, claim=token).delete()


def _store(*, user: Any, key: str, token: uuid.UUID, response: Response) -> None:
    body = json.dumps(response.data, cls=JSONEncoder)
    headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
    stored = IdempotencyKey.objects.filter(user=user, key=key, claim=token).update(
        status_code=response.status_code, response_body=body, response_headers=headers)
    if stored != 1:
        raise _ClaimLost()


def replay_response(row: IdempotencyKey) -> Response:
    """The first response again, marked as a replay."""
    headers = {**row.response_headers, REPLAYED_HEADER: "true"}
    return Response(json.loads(row.response_body), status=row.status_code, headers=headers)


def idempotent(request: Request, handle: Callable[[], Response]) -> Response:
    """Run `handle` once per (user, Idempotency-Key); without the header just run it."""
    key = idempotency_key(request)
    if key is None:
        return handle()
    user = request.user
    token, row = idempotency_claim(user=user, key=key, fingerprint=request_fingerprint(request))
    if row is not None:
        return replay_response(row)
    assert token is not None
    try:
        with transaction.atomic():
            response = handle()
            if status.is_success(response.status_code):
                _store(user=user, key=key, token=token, response=response)
    except _ClaimLost:
        raise KeyInFlight() from None  # another request holds the key now; nothing of ours was kept
    except BaseException:
        idempotency_release(user=user, key=key, token=token)
        raise
    if not status.is_success(response.status_code):
        idempotency_release(user=user, key=key, token=token)
    return response


def idempotency_keys_sweep() -> int:
    """Delete expired keys; the number deleted."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=_expired_before()).delete()
    return deleted


# For a DRF create view: `POST` honours Idempotency-Key (after auth and throttling, before the work).
# No docstring on purpose: drf-spectacular would show an inherited one as every operation's description.
class IdempotentCreateMixin:
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return idempotent(request, lambda: super(IdempotentCreateMixin, self).post(request, *args, **kwargs))


# --- OpenAPI ---------------------------------------------------------------------------------------------

SCHEMA_PARAMETERS = [
    OpenApiParameter(
        # The pattern is what idempotency_key() accepts: printable ASCII (space to tilde).
        HEADER, {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS, "pattern": "^[ -~]+$"},
        OpenApiParameter.HEADER,
        required=False,
        description="Any unique string (a UUID is a good choice). Within 24 h, the same key with the same body "
                    "returns the first response again and creates nothing; keys are per user."),
    OpenApiParameter(
        REPLAYED_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, response=[201], enum=["true"],
        description="Present (`true`) when this is the stored response of an earlier request with the same key."),
]
SCHEMA_RESPONSES = {
    409: OpenApiResponse(ErrorSerializer, description="The first request with this Idempotency-Key is still "
                                                      "being handled; retry shortly."),
    422: OpenApiResponse(ErrorSerializer, description="This Idempotency-Key was used with a different body."),
}
