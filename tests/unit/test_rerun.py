"""Which stages a re-run from a stage takes from an earlier attempt (jobs/rerun.py), from the plans alone."""
from __future__ import annotations

import pytest

from jobs import rerun
from jobs.models import GenerationJob
from jobs.plans import get_plan


@pytest.mark.parametrize(("job_type", "from_stage", "before"), [
    ("full_video", "parse", []),
    ("full_video", "images", ["parse"]),
    ("full_video", "audio", ["parse"]),  # a stage of a parallel step starts the whole step
    ("full_video", "video", ["parse", "images", "audio"]),
    ("image_generation", "images", ["parse"]),
    ("captions", "burn", ["captions"]),
    ("full_video", "", []),  # a plain attempt
    ("full_video", "gone", []),  # a stage a later plan dropped: the attempt runs everything
])
def test_stages_before__the_steps_ahead_of_the_start_stage(job_type: str, from_stage: str, before: list[str]) -> None:
    assert [s.name for s in rerun.stages_before(get_plan(job_type), from_stage)] == before


def test_reuses__only_whole_stages_before_the_start_are_copied_per_scene_ones_go_through_the_fan_out() -> None:
    job = GenerationJob(job_type="full_video", rerun_from="video", rerun_source=1)
    assert [stage for stage in ("parse", "images", "audio", "video") if rerun.reuses(job, stage)] == ["parse"]
    assert not rerun.reuses(GenerationJob(job_type="full_video", rerun_from="video"), "parse")  # no source
    assert not rerun.reuses(GenerationJob(job_type="full_video"), "parse")


def test_step_choices__one_per_step_a_parallel_one_named_by_its_first_stage() -> None:
    assert get_plan("full_video").step_choices() == [("parse", "parse"), ("images", "images + audio"),
                                                     ("video", "video")]
    assert get_plan("captions").step_choices() == [("captions", "captions"), ("burn", "burn")]
