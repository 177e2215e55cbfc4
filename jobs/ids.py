"""Parsing ids that arrive from URLs, query strings, sockets and task arguments."""
from __future__ import annotations

import uuid


def parse_uuid(value: object) -> uuid.UUID | None:
    """`value` as a UUID (any case, with or without hyphens, or a UUID already), None when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None
