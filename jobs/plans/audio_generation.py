"""audio_generation: script -> scenes -> one narration WAV per scene."""
from __future__ import annotations

from jobs import queues

from . import params, stages
from .plan import JobPlan

PLAN = JobPlan(
    job_type="audio_generation",
    label="Audio generation",
    description="The narration of each scene of the script.",
    steps=(stages.parse(queue=queues.AUDIO, weight=10), stages.narration(queue=queues.AUDIO, weight=90)),
    params={"voice": params.VOICE, "rate_wpm": params.RATE_WPM, "max_scenes": params.MAX_SCENES},
)
