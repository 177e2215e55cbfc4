"""The stages' common entry point, `run(inputs, ctx) -> artifacts`, so a job plan (jobs/plans) can name them.

Each stage reads what earlier stages left in the job's folder, so stages can run as separate tasks on
separate workers. Which stages a job type runs, in which order, is the plan's business, not this module's.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import Artifact, load_artifacts, manifest_path
from .audio import run_audio_stage
from .config import PipelineConfig
from .context import StageContext
from .errors import PermanentError
from .images import run_image_stage
from .script import load_scenes, run_parse_stage
from .video import run_video_stage


@dataclass(frozen=True)
class StageInputs:
    """What a stage may read: its job's folder and params, the project's script, other jobs' folders."""

    out_dir: Path
    params: dict[str, Any]
    config: PipelineConfig
    script: str | None = None
    # Where another job's files are (a captions job reads its source video's); None: nowhere.
    job_dir: Callable[[str], Path] | None = None

    def other_job_dir(self, job_id: str) -> Path:
        if self.job_dir is None:
            raise PermanentError("this run cannot read other jobs' files")
        return self.job_dir(job_id)


StageRun = Callable[[StageInputs, StageContext], list[Artifact]]


def parse_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """Split the project's script into timed scenes (scenes.json)."""
    if inputs.script is None:
        raise ValueError("the parse stage needs the script")
    return run_parse_stage(inputs.script, inputs.out_dir, ctx, params=inputs.params, config=inputs.config)[1]


def image_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """One image per scene."""
    scenes = load_scenes(inputs.out_dir)
    return run_image_stage(scenes, inputs.out_dir, ctx, params=inputs.params, config=inputs.config)


def audio_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """One narration WAV per scene."""
    scenes = load_scenes(inputs.out_dir)
    return run_audio_stage(scenes, inputs.out_dir, ctx, params=inputs.params, config=inputs.config)


def video_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """The MP4 from the scene images and narration."""
    out_dir = inputs.out_dir
    scenes = load_scenes(out_dir)
    images, audios = load_artifacts(out_dir, "image"), load_artifacts(out_dir, "audio")
    return run_video_stage(scenes, images, audios, out_dir, ctx, params=inputs.params, config=inputs.config)


def collect_artifacts(stages: Iterable[tuple[str, str]], out_dir: Path) -> list[Artifact]:
    """The artifacts of (stage, kind) pairs in order; PermanentError naming the first stage not completed."""
    artifacts: list[Artifact] = []
    for stage, kind in stages:
        if not manifest_path(out_dir, kind).exists():
            raise PermanentError(f"the {stage} stage has not completed")
        artifacts += load_artifacts(out_dir, kind)
    return artifacts


def scenes_summary(out_dir: Path) -> dict[str, Any]:
    """The result fields of a job that parsed a script: how many scenes and how long they last."""
    scenes = load_scenes(out_dir)
    return {"scenes": len(scenes), "duration_s": round(sum(scene.duration_s for scene in scenes), 3)}
