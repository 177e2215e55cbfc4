"""A strict little WebVTT reader for tests: each cue's start, end and text (entities decoded)."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

_TIMING = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")


@dataclass(frozen=True)
class ParsedCue:
    start_s: float
    end_s: float
    text: str  # lines joined with "\n"


def _seconds(hours: str, minutes: str, seconds: str, millis: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def parse_vtt(document: str) -> list[ParsedCue]:
    """The cues of a WebVTT document; ValueError for anything the format does not allow."""
    if not (document.startswith("WEBVTT\n") or document == "WEBVTT"):
        raise ValueError("a WebVTT file starts with the line WEBVTT")
    cues = []
    for block in document.strip("\n").split("\n\n")[1:]:
        lines = block.split("\n")
        if "-->" not in lines[0]:
            lines = lines[1:]  # the cue's identifier
        match = _TIMING.match(lines[0]) if lines else None
        if match is None or len(lines) < 2:
            raise ValueError(f"bad cue block: {block!r}")
        groups = match.groups()
        start, end = _seconds(*groups[:4]), _seconds(*groups[4:])
        if "-->" in "\n".join(lines[1:]) or not start < end:
            raise ValueError(f"bad cue: {block!r}")
        cues.append(ParsedCue(start, end, html.unescape("\n".join(lines[1:]))))
    return cues
