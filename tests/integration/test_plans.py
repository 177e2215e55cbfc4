"""Job plans: one declaration per job type, from which routes, the Celery canvas and the forms derive."""
from __future__ import annotations

from pathlib import Path

import pytest
from django import forms

from jobs import plans, queues
from jobs.dispatch import plan_canvas
from jobs.exceptions import InvalidJobInput
from jobs.limits import JobLimits, check_job_size
from jobs.pipeline import Artifact, StageContext, StageInputs
from jobs.plans import JobPlan, Stage, parallel
from jobs.plans.params import VOICE, IntParam
from jobs.plans.registry import PlanRegistry
from jobs.plans.routing import route_task, task_routes
from projects.forms import JobStartForm, job_start_forms


def _nothing(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    return []


def _podcast() -> JobPlan:
    """A job type that exists only in this test: draft, then mix and cover art side by side, then publish."""
    return JobPlan(
        job_type="podcast",
        label="Podcast",
        description="An episode from the script.",
        steps=(
            Stage("draft", _nothing, queue=queues.AUDIO, weight=10, kind="draft", task="draft_podcast_task"),
            parallel(
                Stage("mix", _nothing, queue=queues.AUDIO, weight=50, kind="mix", task="mix_podcast_task"),
                Stage("cover", _nothing, queue=queues.IMAGE, weight=20, kind="cover", task="cover_podcast_task"),
            ),
            Stage("publish", _nothing, queue=queues.VIDEO, weight=20, kind="episode", task="publish_podcast_task"),
        ),
        params={"voice": VOICE, "episodes": IntParam(1, 10, 3, "How many episodes.")},
        time_limit_s=600,
    )


def test_plan__routes_canvas_and_forms_derive_from_a_plan_declared_in_the_test():
    # given a plan that no module registers
    plan = _podcast()

    # when everything else is derived from it
    routes = task_routes([plan])
    canvas = plan_canvas(plan, job_id="j-1", attempt=3, limits=(540, 600))
    form = JobStartForm({"podcast-voice": "de", "podcast-episodes": "11"}, plan=plan)

    # then each stage task is routed to its stage's queue
    assert routes == {
        "jobs.tasks.draft_podcast_task": {"queue": queues.AUDIO},
        "jobs.tasks.mix_podcast_task": {"queue": queues.AUDIO},
        "jobs.tasks.cover_podcast_task": {"queue": queues.IMAGE},
        "jobs.tasks.publish_podcast_task": {"queue": queues.VIDEO},
    }
    # the canvas is draft -> chord(mix | cover, publish), every task immutable, on its queue, with the limits
    draft, fan_out = canvas.tasks
    assert draft.task == "jobs.tasks.draft_podcast_task" and draft.args == ("j-1", 3) and draft.immutable
    assert [(t.task, t.options["queue"]) for t in fan_out.tasks] == [
        ("jobs.tasks.mix_podcast_task", queues.AUDIO), ("jobs.tasks.cover_podcast_task", queues.IMAGE)]
    assert fan_out.body.task == "jobs.tasks.publish_podcast_task" and fan_out.body.immutable
    assert all(sig.options["soft_time_limit"] == 540 and sig.options["time_limit"] == 600
               for sig in (draft, *fan_out.tasks, fan_out.body))
    # the form has one field per param, with the plan's bounds, and refuses what the plan refuses
    assert form.label == "Podcast" and form.job_type == "podcast"
    assert isinstance(form.fields["voice"], forms.ChoiceField) and form.fields["voice"].initial == "en"
    assert isinstance(form.fields["episodes"], forms.IntegerField) and form.fields["episodes"].max_value == 10
    assert not form.is_valid() and "episodes" in form.errors
    assert [f.job_type for f in job_start_forms(plans=[plan])] == ["podcast"]
    # and the worker's view of it: first and last stage, the parallel pair, progress ranges
    assert (plan.first_stage.name, plan.last_stage.name) == ("draft", "publish")
    assert plan.running_beside("mix") == plan.running_beside("cover") == 2 and plan.running_beside("draft") == 1
    assert plan.stage_ranges() == {"draft": (0, 10), "mix": (10, 60), "cover": (60, 80), "publish": (80, 100)}
    assert plan.clean_params({"episodes": 2}) == {"voice": "en", "episodes": 2}


def test_plan__single_stage_plan_is_a_plain_signature(tmp_path: Path):
    plan = JobPlan(job_type="noop", label="Noop", params={},
                   steps=(Stage("only", _nothing, queue=queues.VIDEO, weight=1, kind="only", task="only_task"),))

    canvas = plan_canvas(plan, job_id="j", attempt=1, limits=(1, 2))

    assert canvas.task == "jobs.tasks.only_task" and canvas.options["queue"] == queues.VIDEO


@pytest.mark.parametrize("steps, message", [
    ((parallel(Stage("a", _nothing, queues.VIDEO, 1, "a", "a_task"), Stage("b", _nothing, queues.VIDEO, 1, "b", "b_task")),),
     "first and the last step"),
    ((Stage("a", _nothing, queues.VIDEO, 1, "x", "a_task"), Stage("b", _nothing, queues.VIDEO, 1, "x", "b_task")),
     "same kind"),
    ((Stage("a", _nothing, queues.VIDEO, 0, "a", "a_task"),), "weights are positive"),
])
def test_plan__inconsistent_declarations_are_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        JobPlan(job_type="broken", label="Broken", steps=steps, params={})


def test_registry__refuses_unknown_queues_twice_registered_types_and_task_clashes():
    registry = PlanRegistry()
    registry.register(_podcast())

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(_podcast())
    with pytest.raises(ValueError, match="not declared in jobs/queues.py"):
        registry.register(JobPlan(job_type="odd", label="Odd", params={},
                                  steps=(Stage("a", _nothing, "nowhere", 1, "a", "a_task"),)))
    with pytest.raises(ValueError, match="already runs stage 'draft'"):
        registry.register(JobPlan(job_type="other", label="Other", params={},
                                  steps=(Stage("b", _nothing, queues.VIDEO, 1, "b", "draft_podcast_task"),)))


def test_registered_plans__every_api_choice_route_and_stage_task_comes_from_them():
    from jobs import tasks
    from jobs.api.serializers import JobCreateSerializer
    from jobs.models import GenerationJob

    assert plans.JOB_TYPES == tuple(plan.job_type for plan in plans.REGISTRY.all())
    assert list(JobCreateSerializer().fields["job_type"].choices) == list(plans.JOB_TYPES)
    assert [value for value, _ in GenerationJob._meta.get_field("job_type").choices] == list(plans.JOB_TYPES)
    for plan in plans.REGISTRY.all():
        for stage in plan.stages:
            assert route_task(stage.task_name, (), {}, {}) == task_routes(plans.REGISTRY.all())[stage.task_name]
            assert tasks.STAGE_TASKS[stage.task].name == stage.task_name


def test_job_size_limits__apply_to_the_job_types_whose_plans_record_audio_or_video():
    # given the registered plans, and limits a 60 s scene is over
    limits = JobLimits(max_duration_s=10, max_scene_s=10, max_video_pixels=10**12, max_scratch_bytes=10**9)

    # when each job type is size-checked
    refused = set()
    for plan in plans.REGISTRY.all():
        try:
            check_job_size(job_type=plan.job_type, params={}, durations=[60.0], limits=limits)
        except InvalidJobInput:
            refused.add(plan.job_type)

    # then exactly those with a narration or a video stage are limited (stills have no duration)
    assert refused == {plan.job_type for plan in plans.REGISTRY.all() if plan.makes("audio", "video")}
    assert refused == {"full_video", "audio_generation", "captions"}
    assert _podcast().makes("mix") and not _podcast().makes("audio", "video")
