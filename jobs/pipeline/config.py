"""Pipeline settings with development-safe defaults, read from the environment in one place."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace


def _int_env(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float_env(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _url_env(environ: Mapping[str, str], name: str) -> str | None:
    # An empty value means "not configured", which is how compose files usually switch a backend off.
    raw = environ.get(name, "").strip()
    return raw.rstrip("/") or None


@dataclass(frozen=True)
class PipelineConfig:
    """Limits and backend endpoints; backends are off (built-in renderers) unless their URL is set."""

    max_script_chars: int = 100_000
    max_scenes: int = 200
    words_per_minute: int = 150
    min_scene_seconds: float = 2.0
    ollama_url: str | None = None
    ollama_model: str = "llama3.2"
    sd_api_url: str | None = None
    backend_timeout_s: float = 30.0
    font_path: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PipelineConfig:
        """Build a config from OLLAMA_URL, OLLAMA_MODEL, SD_API_URL and PIPELINE_* variables."""
        defaults = cls()
        return cls(
            max_script_chars=_int_env(environ, "PIPELINE_MAX_SCRIPT_CHARS", defaults.max_script_chars),
            max_scenes=_int_env(environ, "PIPELINE_MAX_SCENES", defaults.max_scenes),
            ollama_url=_url_env(environ, "OLLAMA_URL"),
            ollama_model=environ.get("OLLAMA_MODEL", "").strip() or defaults.ollama_model,
            sd_api_url=_url_env(environ, "SD_API_URL"),
            backend_timeout_s=_float_env(environ, "PIPELINE_BACKEND_TIMEOUT", defaults.backend_timeout_s),
            font_path=environ.get("PIPELINE_FONT_PATH", "").strip() or None,
        )

    def with_overrides(self, **changes: object) -> PipelineConfig:
        """A copy with some fields changed (tests and benchmarks)."""
        return replace(self, **changes)  # type: ignore[arg-type]
