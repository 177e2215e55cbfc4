"""The websocket payloads (CONTRACT.md "WebSockets") and the channel-layer group names, in one place.

Every message a client receives about a job is a `status` message of the same shape, whether it is a
snapshot, a replayed JobEvent or a live push; tests check the shape against STATUS_KEYS.
"""
from __future__ import annotations

import json
from typing import Any

from jobs import states

# The channel-layer event type; channels routes "job.status" to the consumer method `job_status`.
JOB_STATUS_EVENT = "job.status"

STATUS_KEYS = frozenset({"type", "job_id", "status", "progress", "current_stage", "error_message", "seq", "result"})

# Client frames larger than this are refused with an error message (ping/refresh/resume are tiny).
MAX_CLIENT_FRAME_BYTES = 4096


def job_group_name(job_id: Any) -> str:
    """The group every watcher of one job joins (channels allows ASCII letters, digits, `-`, `_`, `.`)."""
    return f"job_{job_id}"


def project_group_name(project_id: Any) -> str:
    """The group every watcher of one project's jobs joins."""
    return f"project_{project_id}"


def status_message(
    *,
    job_id: Any,
    status: str,
    progress: float,
    current_stage: str,
    error_message: str | None,
    seq: int,
    result: Any,
) -> dict[str, Any]:
    """The CONTRACT.md `status` message."""
    return {
        "type": "status",
        "job_id": str(job_id),
        "status": status,
        "progress": float(progress),
        "current_stage": current_stage or "",
        "error_message": error_message,
        "seq": int(seq),
        "result": result,
    }


def snapshot_message(job: Any) -> dict[str, Any]:
    """A job's current state as a `status` message (sent on connect and on refresh)."""
    return status_message(
        job_id=job.pk, status=job.status, progress=job.progress, current_stage=job.current_stage,
        error_message=job.error_message, seq=job.seq,
        result=job.result if job.status == states.COMPLETED else None,
    )


def committed_message(event: Any) -> dict[str, Any]:
    """A committed job event (jobs.listeners.CommittedEvent) as the `status` message pushed to watchers."""
    return status_message(
        job_id=event.job_id, status=event.status, progress=event.progress, current_stage=event.current_stage,
        error_message=event.error_message, seq=event.seq, result=event.result,
    )


def replay_message(event: Any, job: Any) -> dict[str, Any]:
    """A recorded JobEvent as a `status` message.

    JobEvent keeps no error message or result; the job's current ones belong to its terminal event only
    (the event whose seq is the job's seq, when the job is finished), every other event carries null.
    """
    is_final = event.seq == job.seq and states.is_terminal(job.status) and event.status == job.status
    return status_message(
        job_id=event.job_id, status=event.status, progress=event.progress, current_stage=event.stage,
        error_message=job.error_message if is_final and job.status != states.COMPLETED else None,
        seq=event.seq,
        result=job.result if is_final and job.status == states.COMPLETED else None,
    )


def encode(message: dict[str, Any]) -> str:
    """A message as the JSON text frame clients receive (what AsyncJsonWebsocketConsumer.send_json sends)."""
    return json.dumps(message)


def group_event(message: dict[str, Any]) -> dict[str, Any]:
    """Wrap a status message for group_send (the payload keeps its own `type`, so it is nested).

    `text` is the frame already encoded once by the publisher, so a job watched by 1,000 sockets is not
    JSON-encoded 1,000 times; consumers fall back to encoding `payload` when it is missing.
    """
    return {"type": JOB_STATUS_EVENT, "payload": message, "text": encode(message)}


def pong_message() -> dict[str, str]:
    return {"type": "pong"}


def error_message(text: str) -> dict[str, str]:
    return {"type": "error", "message": text}
