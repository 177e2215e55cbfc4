"""URL helpers: every API path answers with and without its trailing slash."""
from __future__ import annotations

from typing import Any


def slash_optional(route: str, view: Any, name: str) -> list:
    """The same view at `route/` and `route` (no redirect: a redirected POST would lose its body)."""
    from django.urls import path

    base = route.rstrip("/")
    return [path(f"{base}/", view, name=name), path(base, view, name=f"{name}-noslash")]
