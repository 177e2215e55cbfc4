"""The artifact store the running deployment uses: `get_store()` (the interface: jobs/pipeline/store.py).

Which backend is Django's business: STORAGES["artifacts"] is a FileSystemStorage (ARTIFACT_STORAGE=local,
the default: files under MEDIA_ROOT) or django-storages' S3Storage (ARTIFACT_STORAGE=s3); this module adapts
it to the ArtifactStore interface.
"""
from __future__ import annotations

import logging

from jobs.pipeline.store import ArtifactMissing, ArtifactStore, StoreRefused, StoreUnavailable, check_key
from jobs.pipeline.local_store import LocalStore

from .metered import MeteredStore

STORAGE_ALIAS = "artifacts"
logger = logging.getLogger(__name__)


def get_store() -> ArtifactStore:
    """The configured store (cheap: the Django storage object, and its connections, are cached by Django)."""
    from django.core.files.storage import FileSystemStorage, storages

    storage = storages[STORAGE_ALIAS]
    if isinstance(storage, FileSystemStorage):
        return MeteredStore(LocalStore(storage.location))
    from .s3 import S3Store

    return MeteredStore(S3Store(storage))


def warm_up(**_: object) -> None:
    """Create the store's client now (Celery worker_init, before the pool forks; and in each pool child):
    botocore reads its service models when a client is made, about a second on a busy machine, which the
    first stage of every fresh pool process would otherwise add to its job's time."""
    try:
        store = get_store()
        inner = getattr(store, "inner", store)
        if inner.backend == "s3":
            inner.client  # noqa: B018 - creating it is the point
    except Exception:  # a store that is misconfigured is reported by /healthz and by the first stage
        logger.warning("artifact store: client not created ahead of time", exc_info=True)


__all__ = ["ArtifactMissing", "ArtifactStore", "LocalStore", "StoreRefused", "StoreUnavailable", "check_key",
           "get_store", "warm_up"]
