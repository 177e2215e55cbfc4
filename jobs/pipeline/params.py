"""Per-job-type parameter schemas: strict validation with defaults, plus a JSON-schema description."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ValidationError

JOB_TYPES = ("full_video", "image_generation", "audio_generation")

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


Param = IntParam | ChoiceParam

_WIDTH = IntParam(64, 1920, 1280, "Frame width in pixels (even).", even=True)
_HEIGHT = IntParam(64, 1080, 720, "Frame height in pixels (even).", even=True)
_MAX_SCENES = IntParam(1, 200, 50, "Reject scripts with more scenes than this.")
_VOICE = ChoiceParam(VOICES, "en", "espeak-ng voice for the narration.")
_RATE = IntParam(80, 300, 150, "Narration speed in words per minute; also sets scene durations.")
_FPS = IntParam(1, 60, 24, "Frames per second of the video.")

PARAMS: dict[str, dict[str, Param]] = {
    "image_generation": {"width": _WIDTH, "height": _HEIGHT, "max_scenes": _MAX_SCENES},
    "audio_generation": {"voice": _VOICE, "rate_wpm": _RATE, "max_scenes": _MAX_SCENES},
    "full_video": {
        "width": _WIDTH,
        "height": _HEIGHT,
        "voice": _VOICE,
        "rate_wpm": _RATE,
        "fps": _FPS,
        "max_scenes": _MAX_SCENES,
    },
}

PARAMS_SCHEMA: dict[str, dict[str, Any]] = {
    job_type: {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: param.schema() for name, param in fields.items()},
    }
    for job_type, fields in PARAMS.items()
}


def default_params(job_type: str) -> dict[str, Any]:
    """The parameters a job of `job_type` gets when none are given."""
    return validate_params(job_type, None)


def validate_params(job_type: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Return `params` checked against `job_type`'s schema with defaults filled in; ValidationError otherwise."""
    if job_type not in PARAMS:
        raise ValidationError("job_type", f"must be one of: {', '.join(JOB_TYPES)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationError("params", "must be an object")
    fields = PARAMS[job_type]
    # Sorted so the same bad input always names the same key first.
    for key in sorted(params, key=str):
        if key not in fields:
            raise ValidationError(str(key), f"unknown parameter; allowed: {', '.join(fields)}")
    return {name: param.clean(name, params.get(name, param.default)) for name, param in fields.items()}
