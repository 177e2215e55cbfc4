"""Celery routes derived from the job plans: each stage task goes to its stage's queue.

Dispatch sets every stage's queue from its plan anyway (one stage task, such as parse, runs on each job
type's own queue); these routes are the default for a stage task sent by hand.
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from .plan import JobPlan


def task_routes(plans: Iterable[JobPlan]) -> dict[str, dict[str, str]]:
    """{"jobs.tasks.<task>": {"queue": …}}: the queue of the first plan declaring each stage task."""
    routes: dict[str, dict[str, str]] = {}
    for plan in plans:
        for stage in plan.stages:
            routes.setdefault(stage.task_name, {"queue": stage.queue})
    return routes


@cache
def _registered_routes() -> dict[str, dict[str, str]]:
    from . import REGISTRY

    return task_routes(REGISTRY.all())


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str] | None:
    """A Celery router (settings.CELERY_TASK_ROUTES names it): the route of a registered stage task, else None."""
    route = _registered_routes().get(name)
    # A copy: Celery merges the message's options into the dict it gets back.
    return dict(route) if route is not None else None
