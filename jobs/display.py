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


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st…"""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def about(seconds: float) -> str:
    """A rough wait for people: "less than a minute", "about 2 min", "about 1 h 10 min"."""
    if seconds < 60:
        return "less than a minute"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def queue_text(position: int | None, starts_in_s: float | None) -> str:
    """"3rd in line, starts in about 2 min" (the job and project pages; static/js/pages.js says the same)."""
    if position is None:
        return "waiting for a worker"
    text = "next in line" if position == 1 else f"{ordinal(position)} in line"
    if starts_in_s is not None:
        text += ", starts in " + about(starts_in_s)
    return text


def queue_line(job: object) -> str:
    """A queued job's place in line as a sentence; "" for any other job."""
    from .queue_positions import starts_in_s

    if getattr(job, "status", None) != "queued":
        return ""
    if getattr(job, "admitted_at", None) is not None:
        return "starting: sent to a worker"
    return queue_text(job.current_queue_position, starts_in_s(job))
