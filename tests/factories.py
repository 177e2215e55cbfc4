"""Factories for test rows: users, projects and jobs created the way the app creates them."""
from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from jobs import services
from jobs.models import GenerationJob
from projects.models import Project

_counter = itertools.count(1)

SCRIPT = "# Scene 1\nA quiet morning in the city.\n\n# Scene 2\nThe market wakes up slowly.\n"


def make_user(*, username: str | None = None, password: str = "pw-test-123456", staff: bool = False, **extra: Any):
    User = get_user_model()
    name = username or f"user{next(_counter)}"
    if staff:
        return User.objects.create_superuser(name, f"{name}@example.com", password, **extra)
    return User.objects.create_user(name, f"{name}@example.com", password, **extra)


def make_project(*, owner=None, name: str | None = None, script: str = SCRIPT) -> Project:
    owner = owner or make_user()
    return Project.objects.create(owner=owner, name=name or f"Project {next(_counter)}", script=script)


def make_job(*, project: Project | None = None, job_type: str = "image_generation", params: dict | None = None,
             owner=None) -> GenerationJob:
    project = project or make_project(owner=owner)
    return services.job_create(project=project, job_type=job_type, params=params or {})


def make_processing_job(**kwargs: Any) -> GenerationJob:
    job = make_job(**kwargs)
    started = services.job_start(job_id=job.pk, worker="test-worker")
    assert started is not None
    return started
