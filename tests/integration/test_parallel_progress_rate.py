"""A full_video job's two parallel stages share the job's progress-event rate (JOBS PROGRESS_EVENTS_PER_S)."""
from __future__ import annotations

import time

import pytest

from jobs import services
from jobs.conf import job_settings
from jobs.models import JobEvent
from jobs.worker import JobStageContext
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_stage_contexts__parallel_stages_together_stay_within_the_per_job_rate() -> None:
    # given a processing full_video job whose images and narration stages report as fast as they can
    job = make_job(job_type="full_video")
    services.job_start(job_id=job.pk, worker="test-worker")
    conf = job_settings()
    contexts = [JobStageContext.for_stage(job_id=str(job.pk), job_type="full_video", attempt=1, stage=stage, conf=conf)
                for stage in ("images", "audio")]
    # when both report for about two seconds (interleaved, as two workers would)
    started, step = time.monotonic(), 0
    while time.monotonic() - started < 2.0:
        step += 1
        for ctx in contexts:
            ctx.report(min(99.0, step / 10), f"{ctx.stage} step {step}")
        time.sleep(0.002)
    for ctx in contexts:
        ctx.coalescer.flush()
    # then the job recorded at most ~PROGRESS_EVENTS_PER_S progress events a second, not that rate per stage
    events = list(JobEvent.objects.filter(job=job, kind=JobEvent.PROGRESS).order_by("seq"))
    span = (events[-1].created_at - events[0].created_at).total_seconds()
    assert span >= 1.5
    assert len(events) <= span * conf.PROGRESS_EVENTS_PER_S + 4, (len(events), span)
    assert len(events) >= span * conf.PROGRESS_EVENTS_PER_S / 2, "coalescing must not starve the stream"


def test_stage_contexts__a_stage_running_alone_keeps_the_whole_rate() -> None:
    conf = job_settings()
    ctx = JobStageContext.for_stage(job_id="x", job_type="image_generation", attempt=1, stage="images", conf=conf)
    assert ctx.coalescer.interval == pytest.approx(1.0 / conf.PROGRESS_EVENTS_PER_S)
