"""Token authentication with a short per-process cache of token -> user."""
from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.conf import settings
from rest_framework.authentication import TokenAuthentication


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication that remembers key -> user for API_TOKEN_CACHE_S seconds in this process.

    The token lookup was one of the two database round trips of a GET /api/jobs/{id}/ (docs/BENCHMARKS.md,
    "API request cost"). A deleted token or a deactivated user is refused at once by the process that made
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
    """Called from ApiConfig.ready: forget deleted tokens and changed or deleted users at once."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save
    from rest_framework.authtoken.models import Token

    post_delete.connect(_on_token_deleted, sender=Token, dispatch_uid="api.authentication.token_deleted")
    post_save.connect(_on_user_saved, sender=get_user_model(), dispatch_uid="api.authentication.user_saved")
    post_delete.connect(_on_user_saved, sender=get_user_model(), dispatch_uid="api.authentication.user_deleted")
