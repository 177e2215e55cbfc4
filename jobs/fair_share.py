"""The staff view of fair sharing (admin "Fair sharing"): per queue its slots, running and waiting jobs;
per user and queue what they run and wait with, and their running limit."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count

from . import capacity
from .admission import default_limit, holding_jobs, user_limits, waiting_jobs


@dataclass
class QueueRow:
    queue: str
    slots: int | None  # None: no live worker consumes it
    running: int = 0
    waiting: int = 0
    users: list[dict[str, Any]] = field(default_factory=list)


def overview() -> dict[str, Any]:
    slots = capacity.slots() or {}
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: {"running": 0, "waiting": 0})
    for kind, query in (("running", holding_jobs()), ("waiting", waiting_jobs())):
        rows = query.order_by().values_list("queue", "project__owner_id").annotate(n=Count("pk"))
        for queue, owner_id, n in rows:
            counts[(queue, owner_id)][kind] = n
    owner_ids = {owner_id for _, owner_id in counts}
    names = dict(get_user_model().objects.filter(pk__in=owner_ids).values_list("pk", "username"))
    limits = user_limits(owner_ids)
    queues: dict[str, QueueRow] = {}
    for (queue, owner_id), n in sorted(counts.items(), key=lambda item: (item[0][0], -item[1]["waiting"])):
        row = queues.setdefault(queue, QueueRow(queue=queue, slots=slots.get(queue)))
        row.running += n["running"]
        row.waiting += n["waiting"]
        row.users.append({"id": owner_id, "username": names.get(owner_id, f"#{owner_id}"), **n,
                          "limit": limits.get(owner_id, default_limit())})
    return {"queues": list(queues.values()), "default_limit": default_limit(), "slots": slots}
