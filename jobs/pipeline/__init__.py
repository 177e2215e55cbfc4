"""The generation pipeline: script -> scenes -> images / narration -> video, as plain Python.

No Celery or Channels here; callers pass a StageContext for progress and cancellation.
"""
from __future__ import annotations

from .artifacts import (
    Artifact,
    StageFiles,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_artifacts,
)
from .audio import run_audio_stage
from .config import PipelineConfig
from .context import ScaledContext, StageContext
from .errors import JobCancelled, PermanentError, PipelineError, TransientError, ValidationError
from .images import render_scene_image, run_image_stage
from .media import probe_duration, probe_streams
from .runner import StageInputs, StageRun, collect_artifacts, scenes_summary
from .script import Scene, load_scenes, parse_script, run_parse_stage, validate_script
from .store import ArtifactMissing, ArtifactStore, StoreRefused, StoreUnavailable
from .video import run_video_stage

__all__ = [
    "Artifact",
    "ArtifactMissing",
    "ArtifactStore",
    "JobCancelled",
    "PermanentError",
    "PipelineConfig",
    "PipelineError",
    "ScaledContext",
    "Scene",
    "StageContext",
    "StageFiles",
    "StageInputs",
    "StageRun",
    "StoreRefused",
    "StoreUnavailable",
    "TransientError",
    "ValidationError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "collect_artifacts",
    "load_artifacts",
    "load_scenes",
    "parse_script",
    "probe_duration",
    "probe_streams",
    "render_scene_image",
    "run_audio_stage",
    "run_image_stage",
    "run_parse_stage",
    "run_video_stage",
    "scenes_summary",
    "validate_script",
]
