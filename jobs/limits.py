"""Job size limits checked at create: total narrated length, length of one scene, pixels encoded, scratch.

A scene lasts its word count over the speaking rate with no upper bound, so without these one 50,000-word
script is ten hours of audio and video. Defaults come from settings (`JOBS_MAX_*`); staff change them live
in the admin (django-constance, "Constance › Config"), read here at every check.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .exceptions import InvalidJobInput

# The constance keys (also the names the 400 cites), with what each one bounds.
MAX_DURATION = "JOB_MAX_DURATION_S"
MAX_SCENE = "JOB_MAX_SCENE_S"
MAX_VIDEO_PIXELS = "JOB_MAX_VIDEO_PIXELS"
MAX_SCRATCH = "JOB_MAX_SCRATCH_BYTES"

# The artifact kinds that last as long as the narration (read from each job type's plan); stills do not.
TIMED_KINDS = ("audio", "video")


@dataclass(frozen=True)
class JobLimits:
    """The limits in force: seconds of narration per job and per scene, width × height × fps × seconds, bytes."""

    max_duration_s: int
    max_scene_s: int
    max_video_pixels: int
    max_scratch_bytes: int


def current_limits() -> JobLimits:
    """The limits as staff last set them (settings defaults until then)."""
    from constance import config

    return JobLimits(
        max_duration_s=int(getattr(config, MAX_DURATION)),
        max_scene_s=int(getattr(config, MAX_SCENE)),
        max_video_pixels=int(getattr(config, MAX_VIDEO_PIXELS)),
        max_scratch_bytes=int(getattr(config, MAX_SCRATCH)),
    )


def check_job_size(*, job_type: str, params: dict[str, Any], durations: Iterable[float],
                   limits: JobLimits | None = None) -> None:
    """Raise InvalidJobInput naming the limit when the job would narrate or encode more than allowed."""
    from .plans import get_plan

    plan = get_plan(job_type)
    if not plan.makes(*TIMED_KINDS):
        return
    limits = limits or current_limits()
    durations = list(durations)
    for index, seconds in enumerate(durations, start=1):
        if seconds > limits.max_scene_s:
            raise InvalidJobInput("script", (
                f"scene {index} lasts {seconds:.0f} s when narrated; the limit {MAX_SCENE} is "
                f"{limits.max_scene_s} s per scene (split it, or raise rate_wpm)"))
    total = sum(durations)
    if total > limits.max_duration_s:
        raise InvalidJobInput("script", (
            f"lasts {total:.0f} s when narrated; the limit {MAX_DURATION} is {limits.max_duration_s} s per job"))
    if plan.makes("video") and {"width", "height", "fps"} <= params.keys():
        pixels = params["width"] * params["height"] * params["fps"] * total
        if pixels > limits.max_video_pixels:
            raise InvalidJobInput("params", (
                f"width × height × fps × duration is {pixels:.3g} pixels for {total:.0f} s of video; the limit "
                f"{MAX_VIDEO_PIXELS} is {limits.max_video_pixels:.3g} (lower the size or fps, or shorten the script)"))


def pipeline_config() -> Any:
    """The pipeline's settings for a running job, with the job's scratch space limit in force."""
    from dataclasses import replace

    from .pipeline import PipelineConfig

    return replace(PipelineConfig.from_env(), max_job_bytes=current_limits().max_scratch_bytes)
