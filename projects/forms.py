"""Forms of the project pages: create a project, edit its script, start a job with its main params."""
from __future__ import annotations

from typing import Any

from django import forms

from jobs import states
from jobs.pipeline import PipelineConfig, ValidationError, validate_script
from jobs.pipeline.params import PARAMS, ChoiceParam, IntParam

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


def _param_field(name: str, param: IntParam | ChoiceParam) -> forms.Field:
    label = name.replace("_", " ").capitalize().replace("wpm", "(words/min)")
    if isinstance(param, ChoiceParam):
        return forms.ChoiceField(label=label, choices=[(c, c) for c in param.choices], initial=param.default,
                                 help_text=param.description)
    attrs = {"step": 2} if param.even else {}
    return forms.IntegerField(label=label, min_value=param.minimum, max_value=param.maximum, initial=param.default,
                              help_text=param.description, widget=forms.NumberInput(attrs=attrs))


class JobStartForm(forms.Form):
    """The main params of one job type, built from the pipeline's schema (one form per type, prefixed)."""

    def __init__(self, *args: Any, job_type: str, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", job_type)
        super().__init__(*args, **kwargs)
        self.job_type = job_type
        self.label = dict(states.JOB_TYPE_CHOICES)[job_type]
        for name, param in PARAMS[job_type].items():
            self.fields[name] = _param_field(name, param)

    def add_job_error(self, field: str, message: str) -> None:
        """Show an InvalidJobInput next to its field, or above the form when it names no field here."""
        if field in self.fields:
            self.add_error(field, message)
        else:
            self.add_error(None, f"{field.replace('_', ' ').capitalize()}: {message}")


def job_start_forms(data: Any = None, *, submitted: str | None = None) -> list[JobStartForm]:
    """One form per job type; only the submitted one is bound to the POST data."""
    return [
        JobStartForm(data if job_type == submitted else None, job_type=job_type)
        for job_type in states.JOB_TYPES
    ]
