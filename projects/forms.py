"""Forms of the project pages: create a project, edit its script, start a job with its main params."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

from jobs.pipeline import PipelineConfig, ValidationError, validate_script
from jobs.plans import REGISTRY, JobPlan, get_plan
from jobs.plans.params import ChoiceParam, JobRefParam, Param

from .models import Project

SCRIPT_HELP = "Start each scene with a heading such as “# Scene 1”, or separate scenes with blank lines."


def _clean_script(script: str) -> str:
    """The same pre-flight rules a job applies, so a project never starts with an unusable script."""
    try:
        validate_script(script, PipelineConfig.from_env())
    except ValidationError as exc:
        raise forms.ValidationError(f"The script {exc.message}.") from None
    return script


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=Project._meta.get_field("name").max_length, strip=True)
    script = forms.CharField(widget=forms.Textarea(attrs={"rows": 10}), strip=False, help_text=SCRIPT_HELP)

    def clean_script(self) -> str:
        return _clean_script(self.cleaned_data["script"])


class ScriptForm(forms.Form):
    script = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), strip=False, help_text=SCRIPT_HELP)

    def clean_script(self) -> str:
        return _clean_script(self.cleaned_data["script"])


def _param_field(name: str, param: Param, project: Any) -> forms.Field:
    label = name.replace("_", " ").capitalize().replace("wpm", "(words/min)")
    if isinstance(param, JobRefParam):
        return _job_ref_field(label, param, project)
    if isinstance(param, ChoiceParam):
        return forms.ChoiceField(label=label, choices=[(c, c) for c in param.choices], initial=param.default,
                                 help_text=param.description)
    attrs = {"step": 2} if param.even else {}
    return forms.IntegerField(label=label, min_value=param.minimum, max_value=param.maximum, initial=param.default,
                              help_text=param.description, widget=forms.NumberInput(attrs=attrs))


def _job_ref_field(label: str, param: JobRefParam, project: Any) -> forms.Field:
    """A choice of the project's completed jobs of the referenced type; empty means "the latest"."""
    from jobs import selectors

    jobs = selectors.jobs_completed_of_type(project=project, job_type=param.job_type) if project is not None else []
    choices = [("", f"Latest completed {get_plan(param.job_type).label.lower()}")]
    choices += [(str(job.pk), f"{str(job.pk)[:8]} · {job.completed_at:%Y-%m-%d %H:%M}") for job in jobs]
    return forms.TypedChoiceField(label=label, choices=choices, required=False, empty_value=None,
                                  help_text=param.description)


class JobStartForm(forms.Form):
    """The params of one job type, built from its plan (one form per type, prefixed with the type)."""

    def __init__(self, *args: Any, plan: JobPlan, project: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", plan.job_type)
        super().__init__(*args, **kwargs)
        self.job_type = plan.job_type
        self.label = plan.label
        self.description = plan.description
        for name, param in plan.params.items():
            self.fields[name] = _param_field(name, param, project)

    def add_job_error(self, field: str, message: str) -> None:
        """Show an InvalidJobInput next to its field, or above the form when it names no field here."""
        if field in self.fields:
            self.add_error(field, message)
        else:
            self.add_error(None, f"{field.replace('_', ' ').capitalize()}: {message}")


def job_start_forms(data: Any = None, *, submitted: str | None = None, project: Any = None,
                    plans: Iterable[JobPlan] | None = None) -> list[JobStartForm]:
    """One form per job plan; only the submitted one is bound to the POST data."""
    return [
        JobStartForm(data if plan.job_type == submitted else None, plan=plan, project=project)
        for plan in (REGISTRY.all() if plans is None else plans)
    ]
