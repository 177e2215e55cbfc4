"""Parameter declarations of job plans: strict validation with defaults, plus a JSON-schema description.

A plan lists its parameters as `{name: Param}`; `clean_fields` checks a job's params against that list.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.pipeline.errors import ValidationError

# Voices espeak-ng ships with by default; kept short so every value is known to work.
VOICES = ("en", "en-us", "en-gb", "de", "fr", "es")


@dataclass(frozen=True)
class IntParam:
    """An integer parameter within inclusive bounds; `even` because H.264 with yuv420p needs even sizes."""

    minimum: int
    maximum: int
    default: int
    description: str
    even: bool = False

    def clean(self, name: str, value: Any) -> int:
        # bool is a subclass of int in Python, but `true` is never a sensible width.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(name, f"must be an integer between {self.minimum} and {self.maximum}")
        if not self.minimum <= value <= self.maximum:
            raise ValidationError(name, f"must be between {self.minimum} and {self.maximum}, got {value}")
        if self.even and value % 2:
            raise ValidationError(name, f"must be an even number (H.264 video needs even sizes), got {value}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
            "default": self.default,
            "description": self.description,
        }
        if self.even:
            out["multipleOf"] = 2
        return out


@dataclass(frozen=True)
class ChoiceParam:
    """A string parameter from a fixed list."""

    choices: tuple[str, ...]
    default: str
    description: str

    def clean(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError(name, f"must be one of: {', '.join(self.choices)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices), "default": self.default, "description": self.description}


@dataclass(frozen=True)
class JobRefParam:
    """The id of another job of type `job_type`; null picks one (the plan's `resolve` checks it in the database)."""

    job_type: str
    description: str
    default: None = None

    def clean(self, name: str, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                pass
        raise ValidationError(name, f"must be the id (a UUID) of a {self.job_type} job")

    def schema(self) -> dict[str, Any]:
        return {"type": ["string", "null"], "format": "uuid", "default": None, "description": self.description}


Param = IntParam | ChoiceParam | JobRefParam


def clean_fields(fields: Mapping[str, Param], params: Any) -> dict[str, Any]:
    """`params` checked against `fields` with defaults filled in; ValidationError naming the field otherwise."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationError("params", "must be an object")
    # Sorted so the same bad input always names the same key first.
    for key in sorted(params, key=str):
        if key not in fields:
            raise ValidationError(str(key), f"unknown parameter; allowed: {', '.join(fields)}")
    return {name: param.clean(name, params.get(name, param.default)) for name, param in fields.items()}


def fields_schema(fields: Mapping[str, Param]) -> dict[str, Any]:
    """The JSON schema of a params object with these fields."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: param.schema() for name, param in fields.items()},
    }


# The parameters the built-in job types share.
WIDTH = IntParam(64, 1920, 1280, "Frame width in pixels (even).", even=True)
HEIGHT = IntParam(64, 1080, 720, "Frame height in pixels (even).", even=True)
MAX_SCENES = IntParam(1, 200, 50, "Reject scripts with more scenes than this.")
VOICE = ChoiceParam(VOICES, "en", "espeak-ng voice for the narration.")
RATE_WPM = IntParam(80, 300, 150, "Narration speed in words per minute; also sets scene durations.")
FPS = IntParam(1, 60, 24, "Frames per second of the video.")
