"""Staff admin for jobs: every owner's jobs, their events, and bulk cancel/retry/re-run through the service."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse

from ops.replica import ReplicaChangeListMixin

from . import plans, selectors, services
from .display import format_duration
from .exceptions import InvalidJobInput, InvalidTransition
from .models import PRIORITIES, GenerationJob, JobEvent, SceneCheckpoint, UserJobLimit
from .pipeline.store import StoreRefused, StoreUnavailable


class JobEventInline(admin.TabularInline):
    model = JobEvent
    ordering = ("seq",)
    fields = ("seq", "kind", "status", "progress", "stage", "message", "attempt", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    verbose_name_plural = "events: status changes and the first event of each stage"

    # A long job's progress ticks are thousands of rows (~36,000 an hour at 10 a second): the inline shows
    # what the job page's timeline is built from. Inline instances are made per request, and Django calls
    # get_formset(request, obj) before it reads get_queryset, so the job is known there.
    _job_id = None

    def get_formset(self, request: HttpRequest, obj: GenerationJob | None = None, **kwargs: Any) -> Any:
        self._job_id = obj.pk if obj is not None else None
        return super().get_formset(request, obj, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobEvent]:
        if self._job_id is None:
            return super().get_queryset(request)
        return selectors.job_timeline_events(job_id=self._job_id)

    def has_add_permission(self, request: HttpRequest, obj: GenerationJob | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: GenerationJob | None = None) -> bool:
        return False


class SceneCheckpointInline(admin.TabularInline):
    """The job's scenes: each image and narration clip, its state, the attempt that made or reused it."""

    model = SceneCheckpoint
    ordering = ("scene", "kind")
    fields = ("scene", "kind", "state", "attempt", "reused", "renders", "name", "bytes", "worker", "started_at",
              "finished_at", "fingerprint")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "scenes: per-scene artifacts and whether an attempt reused them"

    def has_add_permission(self, request: HttpRequest, obj: GenerationJob | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: GenerationJob | None = None) -> bool:
        return False


@admin.register(GenerationJob)
class GenerationJobAdmin(ReplicaChangeListMixin, admin.ModelAdmin):
    list_display = ("id", "project", "job_type", "status", "priority", "queue_position", "progress_display",
                    "current_stage", "attempts", "created_at", "duration_display")
    list_filter = ("status", "job_type", "priority", "queue", ("created_at", admin.DateFieldListFilter))
    search_fields = ("id", "project__name", "project__owner__username", "celery_task_id")
    list_select_related = ("project",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = [SceneCheckpointInline, JobEventInline]
    actions = ["cancel_selected", "retry_selected", "rerun_from_stage", "priority_high", "priority_normal",
               "priority_low", "cancel_owners_queued"]
    # Status, progress and results change only through the job service; staff act with the actions.
    readonly_fields = ("id", "project", "job_type", "status", "progress", "current_stage", "error_message",
                       "celery_task_id", "params", "result", "attempts", "lost_count", "seq", "stage_progress",
                       "worker", "heartbeat_at", "queued_at", "dispatched_at", "created_at", "started_at",
                       "completed_at", "updated_at", "priority", "queue", "admitted_at", "queue_position",
                       "start_timeout_s", "max_runtime_s", "rerun_from", "rerun_source")
    change_list_template = "admin/jobs/generationjob/change_list.html"

    def get_urls(self) -> list:
        own = [path("fair-share/", self.admin_site.admin_view(self.fair_share_view), name="jobs_fair_share")]
        return own + super().get_urls()

    def fair_share_view(self, request: HttpRequest) -> HttpResponse:
        """Who waits and who runs, per queue; each user's limit; POST cancels one user's queued jobs."""
        from .fair_share import overview

        if request.method == "POST":
            if not self.has_change_permission(request):
                return HttpResponse(status=403)
            user_id = request.POST.get("cancel_queued_of")
            if user_id and user_id.isdigit():
                n = services.jobs_cancel_queued_for_user(user_id=int(user_id), reason=f"Cancelled by staff ({request.user})")
                self.message_user(request, f"{n} queued job{'s' if n != 1 else ''} of user #{user_id} cancelled.")
            return HttpResponseRedirect(reverse("admin:jobs_fair_share"))
        context = {**self.admin_site.each_context(request), "title": "Fair sharing: waiting and running jobs",
                   "overview": overview(), "can_change": self.has_change_permission(request), "opts": self.model._meta}
        return render(request, "admin/jobs/fair_share.html", context)

    def _set_priority(self, request: HttpRequest, queryset: QuerySet[GenerationJob], priority: str) -> None:
        changed = skipped = 0
        for job_id in queryset.values_list("pk", flat=True):
            try:
                services.job_set_priority(job_id=job_id, priority=priority)
                changed += 1
            except InvalidTransition:
                skipped += 1
        self._report(request, f"set to {priority} priority", changed, skipped)

    @admin.action(description="Set priority: high (waiting jobs)", permissions=["change"])
    def priority_high(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self._set_priority(request, queryset, "high")

    @admin.action(description="Set priority: normal (waiting jobs)", permissions=["change"])
    def priority_normal(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self._set_priority(request, queryset, "normal")

    @admin.action(description="Set priority: low (waiting jobs)", permissions=["change"])
    def priority_low(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self._set_priority(request, queryset, "low")

    @admin.action(description="Cancel ALL queued jobs of the selected jobs' owners", permissions=["change"])
    def cancel_owners_queued(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        owners = set(queryset.values_list("project__owner_id", flat=True))
        n = sum(services.jobs_cancel_queued_for_user(user_id=owner, reason=f"Cancelled by staff ({request.user})")
                for owner in owners)
        self._report(request, "cancelled", n, 0)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="progress", ordering="progress")
    def progress_display(self, obj: GenerationJob) -> str:
        return f"{obj.progress:.1f}%"

    @admin.display(description="duration")
    def duration_display(self, obj: GenerationJob) -> str:
        return format_duration(obj.duration_s, unknown="—")

    def delete_model(self, request: HttpRequest, obj: GenerationJob) -> None:
        services.job_delete(job_id=obj.pk)  # cancels a running job first; a plain delete would orphan it

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        for job_id in queryset.values_list("pk", flat=True):
            services.job_delete(job_id=job_id)

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        changed = skipped = 0
        for job_id in queryset.values_list("pk", flat=True):
            try:
                services.job_cancel(job_id=job_id, reason=f"Cancelled by staff ({request.user})")
                changed += 1
            except InvalidTransition:
                skipped += 1
        self._report(request, "cancelled", changed, skipped)

    @admin.action(description="Retry selected jobs", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        changed = skipped = 0
        for job_id in queryset.values_list("pk", flat=True):
            try:
                services.job_retry(job_id=job_id)
                changed += 1
            except InvalidTransition:
                skipped += 1
        self._report(request, "re-queued", changed, skipped)

    @admin.action(description="Re-run selected jobs from a stage…", permissions=["change"])
    def rerun_from_stage(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> HttpResponse | None:
        """Django's intermediate-page pattern: the first post shows a page to choose the stage; its form posts
        this action again with `apply`, and each job is re-run through the service (jobs/rerun.py)."""
        if "apply" not in request.POST:
            context = {**self.admin_site.each_context(request), "title": "Re-run jobs from a stage",
                       "jobs": queryset, "choices": _stage_choices(queryset), "opts": self.model._meta,
                       "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME}
            return render(request, "admin/jobs/generationjob/rerun_from_stage.html", context)
        from_stage = request.POST.get("from_stage", "")
        changed, reasons = 0, []
        for job_id in queryset.values_list("pk", flat=True):
            try:
                services.job_retry(job_id=job_id, from_stage=from_stage)
                changed += 1
            except InvalidTransition as exc:
                reasons.append(exc.reason)
            except InvalidJobInput as exc:  # no such stage, or the latest attempt did not finish the ones before
                reasons.append(exc.message)
            except (StoreUnavailable, StoreRefused) as exc:
                reasons.append(f"the artifact store is unavailable ({exc})")
        self._report(request, f"re-queued from the {from_stage} stage", changed, len(reasons), reasons)
        return None

    def _report(self, request: HttpRequest, verb: str, changed: int, skipped: int,
                reasons: Iterable[str] = ()) -> None:
        text = f"{changed} job{'s' if changed != 1 else ''} {verb}."
        if skipped:
            why = "; ".join(sorted(set(reasons))) or "not in a state that allows it"
            text += f" {skipped} skipped ({why})."
        self.message_user(request, text, messages.SUCCESS if changed else messages.WARNING)


def _stage_choices(queryset: QuerySet[GenerationJob]) -> list[tuple[str, str]]:
    """The steps a re-run of the selected jobs may start at, over their job types, in plan order."""
    choices: dict[str, str] = {}
    for job_type in queryset.order_by().values_list("job_type", flat=True).distinct():
        for stage, label in plans.get_plan(job_type).step_choices():
            choices.setdefault(stage, label)
    return list(choices.items())


@admin.register(JobEvent)
class JobEventAdmin(ReplicaChangeListMixin, admin.ModelAdmin):
    list_display = ("job", "seq", "kind", "status", "progress", "stage", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("job__id",)
    list_select_related = ("job",)
    readonly_fields = [f.name for f in JobEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobEvent | None = None) -> bool:
        return False




@admin.register(UserJobLimit)
class UserJobLimitAdmin(admin.ModelAdmin):
    """Staff's per-user override of JOBS_MAX_RUNNING_PER_USER."""

    list_display = ("user", "max_running")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
