"""The registered job plans, looked up by job type; registration checks that plans fit together."""
from __future__ import annotations

from jobs import queues
from jobs.pipeline.errors import ValidationError

from .plan import JobPlan, Stage


class PlanRegistry:
    """Job plans by job type, in registration order (the order of forms, choices and docs)."""

    def __init__(self) -> None:
        self._plans: dict[str, JobPlan] = {}

    def register(self, plan: JobPlan) -> JobPlan:
        """Add `plan`; ValueError if it clashes with one already registered."""
        if plan.job_type in self._plans:
            raise ValueError(f"job type {plan.job_type!r} is registered twice")
        unknown = [queue for queue in plan.queues if queue not in queues.ALL]
        if unknown:
            raise ValueError(f"{plan.job_type}: queue {unknown[0]!r} is not declared in jobs/queues.py")
        # One Celery task per stage name: the task only carries (job id, attempt), so its name says the stage.
        tasks = self.stage_tasks()
        for stage in plan.stages:
            if tasks.get(stage.task, stage).name != stage.name:
                raise ValueError(f"{plan.job_type}: task {stage.task!r} already runs stage {tasks[stage.task].name!r}")
        self._plans[plan.job_type] = plan
        return plan

    def get(self, job_type: str) -> JobPlan:
        """The plan of `job_type`; pipeline.ValidationError naming `job_type` if there is none."""
        try:
            return self._plans[job_type]
        except (KeyError, TypeError):
            raise ValidationError("job_type", f"must be one of: {', '.join(self._plans)}") from None

    def all(self) -> tuple[JobPlan, ...]:
        return tuple(self._plans.values())

    def stage_tasks(self) -> dict[str, Stage]:
        """Task short name -> the stage it runs (the first plan declaring it; stage names agree across plans)."""
        tasks: dict[str, Stage] = {}
        for plan in self._plans.values():
            for stage in plan.stages:
                tasks.setdefault(stage.task, stage)
        return tasks
