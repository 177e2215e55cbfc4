"""jobs.conf: the typed job settings."""
from __future__ import annotations

from jobs.conf import JobSettings


def test_time_limits__no_stage_outlasts_the_whole_job() -> None:
    # Given stages allowed an hour each, and a whole job allowed ten minutes
    conf = JobSettings(TIME_LIMIT_S={"image_generation": 3600}, SOFT_TIME_LIMIT_MARGIN_S=60, JOB_TIME_LIMIT_S=600)
    # Then one stage's hard limit is the job's, its soft limit the margin below it
    assert conf.time_limits("image_generation") == (540, 600)
    # ...while a stage limit below the job's is kept
    assert JobSettings(TIME_LIMIT_S={"image_generation": 300}, JOB_TIME_LIMIT_S=600).time_limits(
        "image_generation") == (240, 300)
