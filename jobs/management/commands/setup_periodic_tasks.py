"""Create or update the periodic maintenance tasks in django-celery-beat (idempotent)."""
from __future__ import annotations

from typing import Callable

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from jobs.conf import job_settings


def _webhooks_sweep_interval_s() -> float:
    from webhooks.conf import webhook_settings

    return webhook_settings().sweep_interval_s


# name -> (task, interval in seconds, a jobs settings attribute, or a function of the settings)
PERIODIC_TASKS: dict[str, tuple[str, str | int | Callable[[], float]]] = {
    "jobs: reap stale and undispatched jobs": ("jobs.tasks.reap_jobs_task", "REAPER_INTERVAL_S"),
    "jobs: deadlines and admission": ("jobs.tasks.enforce_deadlines_task", "DEADLINES_INTERVAL_S"),
    "jobs: delete expired task results": ("jobs.tasks.cleanup_results_task", 600),
    "api: delete expired Idempotency-Keys": ("api.tasks.sweep_idempotency_keys_task", 3600),
    "webhooks: send due deliveries (retries, lost tasks)": ("webhooks.tasks.sweep_deliveries_task",
                                                            _webhooks_sweep_interval_s),
    "webhooks: delete old deliveries": ("webhooks.tasks.cleanup_deliveries_task", 3600),
    "jobs: sweep stage leftovers and deleted jobs' folders": ("jobs.tasks.sweep_media_task", 600),
    "jobs: delete artifacts past ARTIFACT_RETENTION_DAYS": ("jobs.tasks.expire_artifacts_task", 3600),
}


class Command(BaseCommand):
    help = "Create or update the periodic maintenance tasks (staff can edit them in the admin afterwards)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--reset", action="store_true", help="overwrite intervals changed in the admin")

    @transaction.atomic
    def handle(self, *args: object, reset: bool = False, **options: object) -> None:
        conf = job_settings()
        for name, (task, every) in PERIODIC_TASKS.items():
            value = getattr(conf, every) if isinstance(every, str) else every() if callable(every) else every
            seconds = max(1, int(value))
            schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
            periodic, created = PeriodicTask.objects.get_or_create(
                name=name,
                defaults={"task": task, "interval": schedule, "queue": "maintenance",
                          "expire_seconds": seconds, "enabled": True},
            )
            if not created and (reset or periodic.task != task):
                periodic.task, periodic.interval, periodic.queue = task, schedule, "maintenance"
                periodic.save()
            self.stdout.write(f"{'created' if created else 'kept'}: {name} every {periodic.interval}")
