"""Dispatch on commit against the real Redis broker: task ids, fail-soft publishing, queue isolation."""
from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from kombu import Connection

from config.celery import app
from jobs import dispatch, services, states
from jobs.models import GenerationJob
from jobs.plans import get_plan
from tests.factories import make_job, make_project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dead_broker():
    """Point this process's Celery app at a port nothing listens on (the broker is "down")."""
    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app._pool = app.amqp._producer_pool = None
    app.conf.broker_url = "redis://127.0.0.1:9/0"
    yield
    app.conf.broker_url, app._pool, app.amqp._producer_pool = saved


def test_dispatch__new_job_is_dispatched_after_commit_with_its_task_id():
    job = make_job(job_type="full_video")

    stored = GenerationJob.objects.get(pk=job.pk)
    assert stored.status == states.QUEUED
    assert stored.celery_task_id and stored.dispatched_at is not None
    uuid.UUID(stored.celery_task_id)


def test_dispatch__broker_unreachable_leaves_the_job_queued_without_raising(dead_broker, caplog):
    job = make_job(job_type="image_generation")  # on_commit dispatch fails inside the create

    stored = GenerationJob.objects.get(pk=job.pk)
    assert stored.status == states.QUEUED
    assert stored.celery_task_id == "" and stored.dispatched_at is None
    assert "broker unreachable, left queued for the reaper" in caplog.text


def test_dispatch__signature_routes_each_stage_to_its_queue():
    signature, first_id = dispatch.job_signature(job_id="j", job_type="full_video", attempt=2)

    # The canvas stops at the parse: it fans the scenes out itself, and the last scene sends the assembly.
    parse = signature
    assert parse.task == "jobs.tasks.parse_script_task"
    assert parse.options["queue"] == "video_generation" and parse.options["task_id"] == first_id
    assert parse.args == ("j", 2) and parse.immutable
    soft, hard = parse.options["soft_time_limit"], parse.options["time_limit"]
    assert 0 < soft < hard
    plan = get_plan("full_video")
    assembly = dispatch.plan_canvas(plan, job_id="j", attempt=2, limits=(soft, hard), start=2)
    assert assembly.task == "jobs.tasks.assemble_video_task" and assembly.options["queue"] == "video_generation"
    image = dispatch.scene_signature(plan.stage("images"), job_id="j", attempt=2, scene=7, limits=(soft, hard))
    narration = dispatch.scene_signature(plan.stage("audio"), job_id="j", attempt=2, scene=7, limits=(soft, hard))
    assert (image.args, image.options["queue"]) == (("j", 2, 7), "image_generation")
    assert (narration.task, narration.options["queue"]) == ("jobs.tasks.generate_narration_task", "audio_generation")

    image_first, _ = dispatch.job_signature(job_id="j", job_type="image_generation", attempt=1)
    assert (image_first.task, image_first.options["queue"]) == ("jobs.tasks.parse_script_task", "image_generation")


def test_dispatch__retry_of_a_failed_job_dispatches_a_new_task():
    job = make_job(job_type="audio_generation")
    first = GenerationJob.objects.get(pk=job.pk).celery_task_id
    services.job_fail(job_id=job.pk, error_message="boom")

    services.job_retry(job_id=job.pk)

    again = GenerationJob.objects.get(pk=job.pk)
    assert again.status == states.QUEUED and again.attempts == 2
    assert again.celery_task_id and again.celery_task_id != first


def test_dispatch__key_prefixes_isolate_two_runs_on_one_redis():
    """`global_keyprefix` (set per test run) keeps one run's queues invisible to another's."""
    queue = f"isolation-{uuid.uuid4().hex[:8]}"
    options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    mine = Connection(settings.CELERY_BROKER_URL, transport_options={**options, "global_keyprefix": "run-a:"})
    theirs = Connection(settings.CELERY_BROKER_URL, transport_options={**options, "global_keyprefix": "run-b:"})
    with mine, theirs:
        mine.SimpleQueue(queue).put({"hello": "a"})
        other = theirs.SimpleQueue(queue)
        with pytest.raises(other.Empty):
            other.get(timeout=0.5)
        message = mine.SimpleQueue(queue).get(timeout=2)
        assert message.payload == {"hello": "a"}
        message.ack()
