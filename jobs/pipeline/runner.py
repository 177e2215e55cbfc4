"""Run a whole job in-process, or one stage from the files earlier stages left in the output directory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import Artifact, load_artifacts, manifest_path
from .audio import run_audio_stage
from .config import PipelineConfig
from .context import ScaledContext, StageContext
from .errors import PermanentError
from .images import run_image_stage
from .params import validate_params
from .script import load_scenes, run_parse_stage
from .video import run_video_stage

# Relative cost of each stage, used to turn stage-local progress into job progress. Order is run order.
STAGE_WEIGHTS: dict[str, dict[str, float]] = {
    "full_video": {"parse": 5, "images": 35, "audio": 25, "video": 35},
    "image_generation": {"parse": 10, "images": 90},
    "audio_generation": {"parse": 10, "audio": 90},
}
STAGES = ("parse", "images", "audio", "video")
# The artifact kind each stage records in its manifest.
STAGE_KIND = {"parse": "scenes", "images": "image", "audio": "audio", "video": "video"}


def stage_ranges(job_type: str) -> dict[str, tuple[float, float]]:
    """Each stage's share of the job's 0..100 progress, e.g. {"parse": (0, 5), "images": (5, 40), …}."""
    weights = STAGE_WEIGHTS[job_type]
    total = sum(weights.values())
    ranges: dict[str, tuple[float, float]] = {}
    start = 0.0
    for stage, weight in weights.items():
        end = start + weight / total * 100.0
        ranges[stage] = (round(start, 6), round(end, 6))
        start = end
    # Float sums can land on 99.999…; the last stage must end the job at exactly 100.
    last = next(reversed(ranges))
    ranges[last] = (ranges[last][0], 100.0)
    return ranges


def run_stage(
    stage: str,
    out_dir: Path,
    ctx: StageContext,
    *,
    params: dict[str, Any],
    config: PipelineConfig,
    script: str | None = None,
) -> list[Artifact]:
    """Run one stage, reading its inputs from `out_dir` (what a separate Celery task per stage needs)."""
    if stage == "parse":
        if script is None:
            raise ValueError("the parse stage needs the script")
        return run_parse_stage(script, out_dir, ctx, params=params, config=config)[1]
    scenes = load_scenes(out_dir)
    if stage == "images":
        return run_image_stage(scenes, out_dir, ctx, params=params, config=config)
    if stage == "audio":
        return run_audio_stage(scenes, out_dir, ctx, params=params, config=config)
    if stage == "video":
        images, audios = load_artifacts(out_dir, "image"), load_artifacts(out_dir, "audio")
        return run_video_stage(scenes, images, audios, out_dir, ctx, params=params, config=config)
    raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")


def build_result(job_type: str, out_dir: Path) -> dict[str, Any]:
    """The job's result from the manifests of its completed stages; PermanentError if one is missing."""
    artifacts: list[Artifact] = []
    for stage in STAGE_WEIGHTS[job_type]:
        kind = STAGE_KIND[stage]
        if not manifest_path(out_dir, kind).exists():
            raise PermanentError(f"the {stage} stage has not completed")
        artifacts += load_artifacts(out_dir, kind)
    scenes = load_scenes(out_dir)
    return {
        "artifacts": [artifact.to_dict(out_dir) for artifact in artifacts],
        "scenes": len(scenes),
        "duration_s": round(sum(scene.duration_s for scene in scenes), 3),
    }


def run_job(
    job_type: str,
    script: str,
    params: dict[str, Any] | None,
    out_dir: Path,
    ctx: StageContext,
    *,
    config: PipelineConfig,
) -> dict[str, Any]:
    """Validate, run every stage of `job_type` in order and return the result dict."""
    params = validate_params(job_type, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stage, (start, end) in stage_ranges(job_type).items():
        run_stage(stage, out_dir, ScaledContext(ctx, start, end), params=params, config=config, script=script)
    return build_result(job_type, out_dir)
