"""Pipeline settings with development-safe defaults, read from the environment (through config.env)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from config.env import env_float, env_int, env_str


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
    sd_model: str | None = None  # the checkpoint the SD server is asked to use (None: whatever it has loaded)
    backend_timeout_s: float = 30.0
    font_path: str | None = None
    audio_engine: str | None = None  # "espeak-ng" or "tone"; default: espeak-ng when it is installed
    max_job_bytes: int | None = None  # disk one job may fill under its folder (jobs/limits.py sets it)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PipelineConfig:
        """Build a config from OLLAMA_URL, OLLAMA_MODEL, SD_API_URL, SD_MODEL and PIPELINE_* variables."""
        defaults = cls()
        # An empty URL means "not configured", which is how compose files usually switch a backend off.
        ollama_url, sd_api_url = ((env_str(name, "", environ=environ) or "").strip().rstrip("/") or None
                                  for name in ("OLLAMA_URL", "SD_API_URL"))
        return cls(
            max_script_chars=env_int("PIPELINE_MAX_SCRIPT_CHARS", defaults.max_script_chars, minimum=1,
                                     environ=environ),
            max_scenes=env_int("PIPELINE_MAX_SCENES", defaults.max_scenes, minimum=1, environ=environ),
            ollama_url=ollama_url,
            ollama_model=(env_str("OLLAMA_MODEL", "", environ=environ) or "").strip() or defaults.ollama_model,
            sd_api_url=sd_api_url,
            sd_model=(env_str("SD_MODEL", "", environ=environ) or "").strip() or None,
            backend_timeout_s=env_float("PIPELINE_BACKEND_TIMEOUT", defaults.backend_timeout_s, positive=True,
                                        environ=environ),
            font_path=(env_str("PIPELINE_FONT_PATH", "", environ=environ) or "").strip() or None,
            audio_engine=(env_str("PIPELINE_AUDIO_ENGINE", "", environ=environ) or "").strip() or None,
        )
