"""Project pages: the list with a create form, and one project with its script and jobs."""
from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from api.throttling import THROTTLED_TEXT, job_create_allowed
from jobs import plans
from jobs import selectors as job_selectors
from jobs import services as job_services
from jobs.display import queue_line
from jobs.exceptions import InvalidJobInput, ProjectNotFound

from . import selectors, services
from .forms import ProjectForm, ScriptForm, job_start_forms

PROJECT_PAGE_JOBS = 50
NO_SCENES = job_selectors.ScenesDone(0, 0, {})
# Per job type: the artifacts each scene gets (its per-scene stages), for the "Scenes done" column.
SCENE_KINDS = {plan.job_type: sum(1 for stage in plan.stages if stage.per_scene is not None)
               for plan in plans.REGISTRY.all()}


@login_required
@require_http_methods(["GET", "POST"])
def project_list(request: HttpRequest) -> HttpResponse:
    """`/`: the user's projects, newest first, each with its latest job; POST creates a project."""
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(owner=request.user, **form.cleaned_data)
        return redirect("project-detail", project_id=project.pk)
    projects = selectors.projects_with_latest_job(user=request.user)
    return render(request, "projects/list.html", {"projects": projects, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def project_detail(request: HttpRequest, project_id: str) -> HttpResponse:
    """`/projects/<id>/`: edit the script (action=save_script) or start a job (action=start_job)."""
    try:
        project = selectors.project_get_for_user(project_id=project_id, user=request.user)
    except ProjectNotFound:
        raise Http404("No such project") from None
    action = request.POST.get("action") if request.method == "POST" else None
    script_form = ScriptForm(request.POST if action == "save_script" else None, initial={"script": project.script})
    submitted = request.POST.get("job_type") if action == "start_job" else None
    status = 200
    start_forms = job_start_forms(request.POST if submitted else None, submitted=submitted, project=project)

    if action == "save_script" and script_form.is_valid():
        services.project_update(project=project, script=script_form.cleaned_data["script"])
        return redirect("project-detail", project_id=project.pk)
    if submitted:
        form = next((f for f in start_forms if f.job_type == submitted), None)
        if form is not None and form.is_valid() and not job_create_allowed(request):
            form.add_job_error("JOBS_CREATE_RATE", THROTTLED_TEXT)
            status = 429
        elif form is not None and form.is_valid():
            try:
                job = job_services.job_create(project=project, job_type=submitted, params=form.cleaned_data)
            except InvalidJobInput as exc:
                form.add_job_error(exc.field, exc.message)
            else:
                return redirect("job-detail", job_id=job.pk)

    jobs = list(job_selectors.jobs_for_project(project_id=project.pk, user=request.user)[:PROJECT_PAGE_JOBS])
    scenes_done = job_selectors.jobs_scenes_done(job_ids=[job.pk for job in jobs])
    for job in jobs:
        job.queue_text = queue_line(job)  # "3rd in line, starts in about 2 min"
        # "3 / 8": scenes whose image and narration are stored; the page counts on from the kinds each
        # scene already has (static/js/pages.js), so a reload mid-job does not restart the count.
        scenes = scenes_done.get(str(job.pk), NO_SCENES)
        job.scenes_done, job.scenes_total = scenes.done, scenes.total
        job.scenes_stored = json.dumps(scenes.kinds, separators=(",", ":"))
        job.scene_kinds = SCENE_KINDS.get(job.job_type, 0)
    context = {"project": project, "script_form": script_form, "start_forms": start_forms, "jobs": jobs,
               "job_type_labels": dict(plans.JOB_TYPE_CHOICES), "scene_kinds": SCENE_KINDS}
    return render(request, "projects/detail.html", context, status=status)
