"""Structured logs: LOG_FORMAT=json gives one JSON object per line, with job_id/task_id on job lines."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import uuid

import pytest

from ops.logging import JobContextFilter, JsonFormatter, job_context
from jobs import states
from jobs.models import GenerationJob
from tests.factories import make_project
from tests.processes import ROOT, subprocess_env, wait_until


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def json_log():
    """The root logger writing JSON through the same formatter and filter as settings.LOGGING."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: _json_lines(stream.getvalue())
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_job_context__stamps_job_and_task_id_on_lines_inside_it_only(json_log) -> None:
    log = logging.getLogger("tests.anything")
    with job_context(job_id="j-1", task_id="t-1"):
        log.info("inside")
        log.info("explicit", extra={"job_id": "j-2"})
    log.info("outside")

    inside, explicit, outside = json_log()
    assert (inside["job_id"], inside["task_id"], inside["message"]) == ("j-1", "t-1", "inside")
    assert (explicit["job_id"], explicit["task_id"]) == ("j-2", "t-1")  # an explicit extra wins
    assert "job_id" not in outside and "task_id" not in outside


def test_celery_task_signals__bind_the_job_and_task_id_of_a_stage_task_while_it_runs(json_log) -> None:
    from celery.signals import task_postrun, task_prerun

    from jobs import tasks

    job_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    log = logging.getLogger("jobs.worker")
    task_prerun.send(sender=tasks.parse_script_task, task_id=task_id, task=tasks.parse_script_task,
                     args=(job_id, 1), kwargs={})
    log.info("working")
    task_postrun.send(sender=tasks.parse_script_task, task_id=task_id, task=tasks.parse_script_task,
                      args=(job_id, 1), kwargs={}, retval=None, state="SUCCESS")
    log.info("after")

    working = next(line for line in json_log() if line["message"] == "working")
    after = next(line for line in json_log() if line["message"] == "after")
    assert (working["job_id"], working["task_id"]) == (job_id, task_id)
    assert "job_id" not in after and "task_id" not in after


@pytest.mark.django_db(transaction=True)
def test_json_logs__job_service_calls_write_parseable_lines_with_the_job_id() -> None:
    """The setting itself: a process started with LOG_FORMAT=json logs each job change as JSON with job_id."""
    project = make_project()
    code = textwrap.dedent(f"""
        import logging
        from jobs import services
        from projects.models import Project
        from ops.logging import job_context
        job = services.job_create(project=Project.objects.get(pk="{project.pk}"), job_type="audio_generation")
        services.job_start(job_id=job.pk, worker="w1")
        services.job_fail(job_id=job.pk, error_message="boom")
        with job_context(job_id=job.pk, task_id="task-123"):
            logging.getLogger("jobs.pipeline").warning("a line without extra")
        print("JOB", job.pk)
    """)
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=subprocess_env(LOG_FORMAT="json", LOG_LEVEL="INFO"))
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split("JOB")[-1].strip()

    lines = [line for line in done.stderr.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    service_lines = [p for p in parsed if p["logger"] == "jobs.services"]
    assert len(service_lines) >= 3, parsed  # created, queued -> processing, processing -> failed
    assert all(p["job_id"] == job_id for p in service_lines), service_lines
    assert all({"ts", "level", "message"} <= set(p) for p in parsed)
    context_line = next(p for p in parsed if p["message"] == "a line without extra")
    assert (context_line["job_id"], context_line["task_id"]) == (job_id, "task-123")
    assert GenerationJob.objects.get(pk=job_id).status == states.FAILED


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_json_logs__worker_lines_about_a_job_carry_its_job_id_and_task_id(processes) -> None:
    """A real worker with LOG_FORMAT=json: every line it logs about the job names the job and the task."""
    from jobs import services

    processes.start_worker(concurrency=1, LOG_FORMAT="json", LOG_LEVEL="INFO")
    project = make_project(script="# Scene 1\nA calm sea.\n")
    job = services.job_create(project=project, job_type="audio_generation", params={})
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status in states.TERMINAL, 90, message="job to finish")
    assert GenerationJob.objects.get(pk=job.pk).status == states.COMPLETED

    lines = _json_lines(processes.log("worker"))
    about_job = [p for p in lines if str(job.pk) in p["message"] or p.get("job_id") == str(job.pk)]
    in_task = [p for p in about_job if p["logger"] != "celery.worker.strategy"]  # "received" is logged before
    assert len(in_task) >= 3, lines[-20:]
    missing = [p for p in in_task if p.get("job_id") != str(job.pk) or not p.get("task_id")]
    assert not missing, missing
