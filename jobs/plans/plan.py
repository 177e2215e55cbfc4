"""A job type declared as data: its stages in run order, their queues and weights, its params and limits.

Dispatch (the Celery canvas), the worker (first / last stage, parallel stages), Celery routes, progress
weights, the API's choices and the project page's forms are all derived from a JobPlan; see docs/JOB_TYPES.md.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.pipeline.artifacts import Artifact, StageFiles
from jobs.pipeline.context import ScaledContext, StageContext
from jobs.pipeline.runner import StageInputs, StageRun, collect_artifacts, scenes_summary
from jobs.pipeline.scenework import SceneWork

from .params import Param, clean_fields, fields_schema

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Stage:
    """One step of a job, run as one Celery task `jobs.tasks.<task>` on `queue`."""

    name: str  # the stage's id in leases, stage_progress and logs ("images")
    run: StageRun  # the pipeline function doing the work
    queue: str
    weight: float  # its share of the job's progress, relative to the plan's other stages
    kind: str  # the artifact kind it records: its manifest, and result.artifacts[].kind
    task: str  # the Celery task's short name; one task name always runs the same stage name
    # Set: the stage runs as one task per scene (its `task` with the scene's number), each scene's artifact
    # checkpointed and reused by later attempts (jobs/scenes.py); `run` still does all scenes in one go
    # (run_in_process: tests, benchmarks).
    per_scene: SceneWork | None = None

    @property
    def task_name(self) -> str:
        return f"jobs.tasks.{self.task}"


Step = Stage | tuple[Stage, ...]


def parallel(*stages: Stage) -> tuple[Stage, ...]:
    """Stages that run at the same time, on their own queues; the next step starts when all have finished."""
    return tuple(stages)


@dataclass(frozen=True)
class JobPlan:
    """Everything that makes a job type; registered once in jobs/plans/__init__.py."""

    job_type: str
    label: str  # "Full video": form titles, admin, job pages
    steps: tuple[Step, ...]  # run order; a tuple step (see `parallel`) runs its stages side by side
    params: Mapping[str, Param]
    description: str = ""
    # Seconds one stage may run (hard limit; the soft one is a margin below). JOBS_TIME_LIMIT_<TYPE>_S overrides.
    time_limit_s: int = 3600
    # Whether the job parses the project's script (then the script is pre-flight checked at create).
    parses_script: bool = True
    # Create-time checks that need the database (e.g. "that job is a completed full_video of this project"):
    # gets the project and the cleaned params, returns the params to store; raises pipeline.ValidationError.
    resolve: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    # The result's fields besides `artifacts`, read from the attempt's stored files once the last stage is done.
    summary: Callable[[StageFiles], dict[str, Any]] = scenes_summary
    groups: tuple[tuple[Stage, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = tuple(step if isinstance(step, tuple) else (step,) for step in self.steps)
        object.__setattr__(self, "groups", groups)
        if not _NAME.match(self.job_type):
            raise ValueError(f"job type {self.job_type!r} must be a lower-case identifier of at most 32 characters")
        if not groups or any(not group for group in groups):
            raise ValueError(f"{self.job_type}: every step needs at least one stage")
        # The first stage starts the job and the last completes it, so neither may share its step.
        if len(groups[0]) != 1 or len(groups[-1]) != 1:
            raise ValueError(f"{self.job_type}: the first and the last step must be single stages")
        stages = self.stages
        for attribute in ("name", "kind"):
            values = [getattr(stage, attribute) for stage in stages]
            if len(set(values)) != len(values):
                raise ValueError(f"{self.job_type}: two stages have the same {attribute}")
        if any(not _NAME.match(stage.name) or stage.weight <= 0 for stage in stages):
            raise ValueError(f"{self.job_type}: stage names are identifiers and weights are positive")
        # Scene tasks need the scenes an earlier step parsed, and a step is fanned out as a whole.
        for number, group in enumerate(groups):
            scene_stages = [stage for stage in group if stage.per_scene is not None]
            # The single stage before it fans the scenes out when it ends (jobs/scenes.py).
            if scene_stages and (number == 0 or len(scene_stages) != len(group) or len(groups[number - 1]) != 1):
                raise ValueError(f"{self.job_type}: a per-scene step follows a single stage (the parse) and has "
                                 "only per-scene stages")
            if any(stage.per_scene is not None and stage.per_scene.kind != stage.kind for stage in scene_stages):
                raise ValueError(f"{self.job_type}: a per-scene stage's work makes its own kind")

    @property
    def stages(self) -> tuple[Stage, ...]:
        """Every stage in run order (parallel ones in their declared order)."""
        return tuple(stage for group in self.groups for stage in group)

    @property
    def first_stage(self) -> Stage:
        return self.groups[0][0]

    @property
    def last_stage(self) -> Stage:
        return self.groups[-1][0]

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(stage.queue for stage in self.stages))

    def makes(self, *kinds: str) -> bool:
        """Whether one of its stages records an artifact of one of these kinds ("audio", "video", …)."""
        return any(stage.kind in kinds for stage in self.stages)

    def stage(self, name: str) -> Stage:
        """The stage called `name`; KeyError if this plan has none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.job_type} has no stage {name!r}")

    def group_index(self, name: str) -> int:
        """The number of the step that runs stage `name`; KeyError if this plan has none."""
        for number, group in enumerate(self.groups):
            if any(stage.name == name for stage in group):
                return number
        raise KeyError(f"{self.job_type} has no stage {name!r}")

    def step_choices(self) -> list[tuple[str, str]]:
        """(stage, label) of each step, in run order: where a re-run may start (a parallel step is named by its
        first stage and labelled with all of them, "images + audio")."""
        return [(group[0].name, " + ".join(stage.name for stage in group)) for group in self.groups]

    def is_scene_step(self, number: int) -> bool:
        """Whether step `number` runs as one task per scene (see Stage.per_scene)."""
        return any(stage.per_scene is not None for stage in self.groups[number])

    def running_beside(self, name: str) -> int:
        """How many stages run at the same time as `name`, itself included (they share the event rate)."""
        return next(len(group) for group in self.groups if any(stage.name == name for stage in group))

    @property
    def weights(self) -> dict[str, float]:
        return {stage.name: float(stage.weight) for stage in self.stages}

    def stage_ranges(self) -> dict[str, tuple[float, float]]:
        """Each stage's share of the job's 0..100 progress, e.g. {"parse": (0, 5), "images": (5, 40), …}."""
        total = sum(stage.weight for stage in self.stages)
        ranges: dict[str, tuple[float, float]] = {}
        start = 0.0
        for stage in self.stages:
            end = start + stage.weight / total * 100.0
            ranges[stage.name] = (round(start, 6), round(end, 6))
            start = end
        # Float sums can land on 99.999…; the last stage must end the job at exactly 100.
        last = self.last_stage.name
        ranges[last] = (ranges[last][0], 100.0)
        return ranges

    def clean_params(self, params: Any) -> dict[str, Any]:
        """`params` checked with defaults filled in; pipeline.ValidationError naming the field otherwise."""
        return clean_fields(self.params, params)

    def params_schema(self) -> dict[str, Any]:
        return fields_schema(self.params)

    def build_result(self, files: StageFiles) -> dict[str, Any]:
        """The job's result from its stages' manifests (artifacts by key); PermanentError if a stage has not completed."""
        artifacts: list[Artifact] = collect_artifacts(((s.name, s.kind) for s in self.stages), files)
        return {"artifacts": [artifact.to_dict() for artifact in artifacts], **self.summary(files)}

    def run_in_process(self, inputs: StageInputs, ctx: StageContext) -> dict[str, Any]:
        """Run every stage one after another in this process (tests, benchmarks) and return the result."""
        params = self.clean_params(inputs.params)
        inputs = StageInputs(files=inputs.files, params=params, config=inputs.config, script=inputs.script,
                             job_files=inputs.job_files)
        ranges = self.stage_ranges()
        for stage in self.stages:
            stage.run(inputs, ScaledContext(ctx, *ranges[stage.name]))
        return self.build_result(inputs.files)
