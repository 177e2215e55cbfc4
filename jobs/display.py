"""How job figures read to people, the same on the job page and in the admin."""
from __future__ import annotations


def format_duration(seconds: float | None, *, unknown: str = "") -> str:
    """"1 h 02 min", "3 min 05 s", "42 s"; `unknown` when there is no figure."""
    if seconds is None:
        return unknown
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
