"""The stages' common entry point, `run(inputs, ctx) -> artifacts`, so a job plan (jobs/plans) can name them.

Each stage reads what earlier stages stored (their manifests under the attempt's prefix in the artifact
store), so stages can run as separate tasks on separate machines. Which stages a job type runs, in which
order, is the plan's business, not this module's.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .artifacts import Artifact, StageFiles
from .audio import run_audio_stage
from .config import PipelineConfig
from .context import StageContext
from .errors import PermanentError
from .images import run_image_stage
from .script import load_scenes, run_parse_stage
from .video import run_video_stage


@dataclass(frozen=True)
class StageInputs:
    """What a stage may read and write: its attempt's files, its params, the project's script, other jobs' files."""

    files: StageFiles
    params: dict[str, Any]
    config: PipelineConfig
    script: str | None = None
    # Another job's stored files (a captions job reads its source video's); None: none can be read.
    job_files: Callable[[str], StageFiles] | None = None

    def other_job_files(self, job_id: str) -> StageFiles:
        if self.job_files is None:
            raise PermanentError("this run cannot read other jobs' files")
        return self.job_files(job_id)


StageRun = Callable[[StageInputs, StageContext], list[Artifact]]


def parse_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """Split the project's script into timed scenes (scenes.json)."""
    if inputs.script is None:
        raise ValueError("the parse stage needs the script")
    return run_parse_stage(inputs.script, inputs.files, ctx, params=inputs.params, config=inputs.config)[1]


def image_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """One image per scene."""
    scenes = load_scenes(inputs.files)
    return run_image_stage(scenes, inputs.files, ctx, params=inputs.params, config=inputs.config)


def audio_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """One narration WAV per scene."""
    scenes = load_scenes(inputs.files)
    return run_audio_stage(scenes, inputs.files, ctx, params=inputs.params, config=inputs.config)


def video_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """The MP4 from the scene images and narration."""
    files = inputs.files
    scenes = load_scenes(files)
    images, audios = files.load_artifacts("image"), files.load_artifacts("audio")
    return run_video_stage(scenes, images, audios, files, ctx, params=inputs.params, config=inputs.config)


def collect_artifacts(stages: Iterable[tuple[str, str]], files: StageFiles) -> list[Artifact]:
    """The artifacts of (stage, kind) pairs in order; PermanentError naming the first stage not completed."""
    artifacts: list[Artifact] = []
    for stage, kind in stages:
        try:
            artifacts += files.load_artifacts(kind)
        except PermanentError as exc:
            if files.has_manifest(kind):  # there, but unreadable: say so
                raise
            raise PermanentError(f"the {stage} stage has not completed") from exc
    return artifacts


def scenes_summary(files: StageFiles) -> dict[str, Any]:
    """The result fields of a job that parsed a script: how many scenes and how long they last."""
    scenes = load_scenes(files)
    return {"scenes": len(scenes), "duration_s": round(sum(scene.duration_s for scene in scenes), 3)}
