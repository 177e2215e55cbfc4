"""Typed readers for environment variables; every setting comes through here.

Each reader takes the variable's name, its default, and optionally the mapping to read (os.environ unless
a caller, such as the pipeline's config, passes its own).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class InvalidSetting(ImproperlyConfigured, ValueError):
    """A variable that is set to something its reader cannot use; the message names the variable."""


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the variable's value, or `default` when unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidSetting(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidSetting(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise InvalidSetting(f"{name} must be at least {minimum}, got {number}")
    return number


def env_float(name: str, default: float, *, positive: bool = False, environ: Mapping[str, str] | None = None) -> float:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise InvalidSetting(f"{name} must be a number, got {value!r}") from None
    if positive and not number > 0:
        raise InvalidSetting(f"{name} must be positive, got {number}")
    return number


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list; blanks are dropped."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def redis_url_with_db(url: str, db: int) -> str:
    """Return `url` pointing at database number `db` (broker and channel layer each get their own)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def redis_db_of(url: str) -> int:
    from urllib.parse import urlsplit

    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0
