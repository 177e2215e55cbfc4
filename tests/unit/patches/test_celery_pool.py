"""The workers' pool patch (patches/celery_pool.py): its tested range covers the pinned celery and billiard,
and the workers run it. Its effect on a real worker: tests/e2e/test_worker_pool.py and bench/time_to_start.py."""
from __future__ import annotations

from django.conf import settings

from patches import celery_pool
from tests.unit.patches.test_versions import covers


def test_celery_pool__tested_versions_cover_the_pinned_celery_and_billiard() -> None:
    assert covers(celery_pool.TESTED, "celery")
    assert covers(celery_pool.TESTED, "billiard")


def test_celery_pool__is_the_workers_pool() -> None:
    assert settings.CELERY_WORKER_POOL == "patches.celery_pool:TaskPool"
