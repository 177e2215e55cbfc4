"""image_generation: script -> scenes -> one image per scene."""
from __future__ import annotations

from jobs import queues

from . import params, stages
from .plan import JobPlan

PLAN = JobPlan(
    job_type="image_generation",
    label="Image generation",
    description="One image per scene of the script.",
    steps=(stages.parse(queue=queues.IMAGE, weight=10), stages.images(queue=queues.IMAGE, weight=90)),
    params={"width": params.WIDTH, "height": params.HEIGHT, "max_scenes": params.MAX_SCENES},
)
