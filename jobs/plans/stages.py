"""The stages the built-in job types share; each plan places them on its own queues with its own weights."""
from __future__ import annotations

from jobs.pipeline import runner, scenework

from .plan import Stage


def parse(*, queue: str, weight: float) -> Stage:
    """Split the project's script into timed scenes."""
    return Stage("parse", runner.parse_stage, queue=queue, weight=weight, kind="scenes", task="parse_script_task")


def images(*, queue: str, weight: float) -> Stage:
    """One image per scene, one task per scene."""
    return Stage("images", runner.image_stage, queue=queue, weight=weight, kind="image", task="generate_images_task",
                 per_scene=scenework.IMAGE)


def narration(*, queue: str, weight: float) -> Stage:
    """One narration WAV per scene, one task per scene."""
    return Stage("audio", runner.audio_stage, queue=queue, weight=weight, kind="audio", task="generate_narration_task",
                 per_scene=scenework.NARRATION)


def video(*, queue: str, weight: float) -> Stage:
    """The MP4 from the images and the narration."""
    return Stage("video", runner.video_stage, queue=queue, weight=weight, kind="video", task="assemble_video_task")
