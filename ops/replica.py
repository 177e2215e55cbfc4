"""The views that read the replica (config/db_routers.py says which reads tolerate its lag and why): the
API's list views and the admin's change lists opt in through these mixins; /metrics calls `replica_reads()`."""
from __future__ import annotations

from config.db_routers import replica_reads


class ReplicaListMixin:
    """A DRF list view whose list (the query, the page, the serialization) reads the replica. The request's
    authentication ran before, on the primary: a token created a moment ago is never refused for lag."""

    def list(self, request, *args, **kwargs):
        with replica_reads():
            return super().list(request, *args, **kwargs)


class ReplicaChangeListMixin:
    """A ModelAdmin whose change list page reads the replica (GET only: the bulk actions are POSTs to the
    same view and act on the primary). The staff check ran before, on the primary."""

    def changelist_view(self, request, extra_context=None):
        if request.method not in ("GET", "HEAD"):
            return super().changelist_view(request, extra_context)
        with replica_reads():
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render") and not response.is_rendered:
                response.render()  # the page's querysets are evaluated while rendering: inside, not after
            return response
