"""full_video: script -> scenes -> images and narration side by side -> one MP4."""
from __future__ import annotations

from jobs import queues

from . import params, stages
from .plan import JobPlan, parallel

PLAN = JobPlan(
    job_type="full_video",
    label="Full video",
    description="Scene images and narration from the script, encoded into one MP4.",
    steps=(
        stages.parse(queue=queues.VIDEO, weight=5),
        parallel(stages.images(queue=queues.IMAGE, weight=35), stages.narration(queue=queues.AUDIO, weight=25)),
        stages.video(queue=queues.VIDEO, weight=35),
    ),
    params={
        "width": params.WIDTH,
        "height": params.HEIGHT,
        "voice": params.VOICE,
        "rate_wpm": params.RATE_WPM,
        "fps": params.FPS,
        "max_scenes": params.MAX_SCENES,
    },
)
