"""The generation pipeline: script -> scenes -> images / narration -> video, as plain Python.

No Celery or Channels here; callers pass a StageContext for progress and cancellation.
"""
from __future__ import annotations

from .artifacts import (
    Artifact,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_artifacts,
    make_artifact,
)
from .audio import run_audio_stage
from .config import PipelineConfig
from .context import NullContext, RecordingContext, ScaledContext, StageContext
from .errors import JobCancelled, PermanentError, PipelineError, TransientError, ValidationError
from .images import render_scene_image, run_image_stage
from .media import probe_duration, probe_streams
from .params import JOB_TYPES, PARAMS_SCHEMA, VOICES, default_params, validate_params
from .runner import STAGE_WEIGHTS, STAGES, build_result, run_job, run_stage, stage_ranges
from .script import Scene, load_scenes, parse_script, run_parse_stage, validate_script
from .video import run_video_stage

__all__ = [
    "JOB_TYPES",
    "PARAMS_SCHEMA",
    "STAGES",
    "STAGE_WEIGHTS",
    "VOICES",
    "Artifact",
    "JobCancelled",
    "NullContext",
    "PermanentError",
    "PipelineConfig",
    "PipelineError",
    "RecordingContext",
    "ScaledContext",
    "Scene",
    "StageContext",
    "TransientError",
    "ValidationError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "build_result",
    "default_params",
    "load_artifacts",
    "load_scenes",
    "make_artifact",
    "parse_script",
    "probe_duration",
    "probe_streams",
    "render_scene_image",
    "run_audio_stage",
    "run_image_stage",
    "run_job",
    "run_parse_stage",
    "run_stage",
    "run_video_stage",
    "stage_ranges",
    "validate_params",
    "validate_script",
]
