"""The websocket payloads (CONTRACT.md "WebSockets") and the channel-layer group names, in one place.

Every message a client receives about a job is a `status` message of the same shape, whether it is a
snapshot, a replayed JobEvent or a live push (tests check the shape against STATUS_KEYS), or an `artifact`
message (ARTIFACT_KEYS) for an artifact event; both carry the seq of their JobEvent.
"""
from __future__ import annotations

import json
from typing import Any

from jobs import states

# The channel-layer event type; channels routes "job.status" to the consumer method `job_status`.
JOB_STATUS_EVENT = "job.status"

STATUS_KEYS = frozenset({"type", "job_id", "status", "progress", "current_stage", "error_message", "seq", "result",
                         "queue_position"})
# A waiting job's place in line changed (jobs/queue_positions.py): not a job event, so it has no seq.
QUEUE_MESSAGE = "queue"
QUEUE_KEYS = frozenset({"type", "job_id", "queue_position", "starts_in_s"})
# CONTRACT.md "WebSockets and SSE: added message"; `reused` says the attempt took it from an earlier one.
ARTIFACT_KEYS = frozenset({"type", "job_id", "seq", "kind", "name", "url", "scene", "reused"})
ARTIFACT = "artifact"

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
    queue_position: int | None = None,
) -> dict[str, Any]:
    """The CONTRACT.md `status` message; `queue_position` is known for a snapshot (null in recorded events:
    a waiting job's place in line moves without an event, and is pushed as a `queue` message)."""
    return {
        "type": "status",
        "job_id": str(job_id),
        "status": status,
        "progress": float(progress),
        "current_stage": current_stage or "",
        "error_message": error_message,
        "seq": int(seq),
        "result": result,
        "queue_position": queue_position,
    }


def queue_message(*, job_id: Any, queue_position: int, starts_in_s: float | None) -> dict[str, Any]:
    """`{"type": "queue", "job_id", "queue_position", "starts_in_s"}`: a waiting job moved up in line."""
    return {"type": QUEUE_MESSAGE, "job_id": str(job_id), "queue_position": int(queue_position),
            "starts_in_s": starts_in_s}
def artifact_message(*, job_id: Any, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    """The CONTRACT.md `artifact` message of an artifact event (`data` is JobEvent.data)."""
    scene = data.get("scene")
    return {
        "type": ARTIFACT,
        "job_id": str(job_id),
        "seq": int(seq),
        "kind": str(data.get("kind") or ""),
        "name": str(data.get("name") or ""),
        "url": str(data.get("url") or ""),
        "scene": scene if isinstance(scene, int) else None,
        "reused": bool(data.get("reused")),
    }


def snapshot_message(job: Any) -> dict[str, Any]:
    """A job's current state as a `status` message (sent on connect and on refresh)."""
    return status_message(
        job_id=job.pk, status=job.status, progress=job.progress, current_stage=job.current_stage,
        error_message=job.error_message, seq=job.seq,
        result=job.result if job.status == states.COMPLETED else None,
        queue_position=getattr(job, "current_queue_position", None),
    )


def committed_message(event: Any) -> dict[str, Any]:
    """A committed job event (jobs.listeners.CommittedEvent) as the message pushed to watchers: `artifact`
    for an artifact event, else `status`."""
    if event.kind == ARTIFACT:
        return artifact_message(job_id=event.job_id, seq=event.seq, data=event.data or {})
    return status_message(
        job_id=event.job_id, status=event.status, progress=event.progress, current_stage=event.current_stage,
        error_message=event.error_message, seq=event.seq, result=event.result,
    )


def replay_message(event: Any, job: Any) -> dict[str, Any]:
    """A recorded JobEvent as a `status` message.

    JobEvent keeps no error message or result; the job's current ones belong to its terminal event only
    (the event whose seq is the job's seq, when the job is finished), every other event carries null.
    An artifact event replays as the `artifact` message it was pushed as.
    """
    if event.kind == ARTIFACT:
        return artifact_message(job_id=event.job_id, seq=event.seq, data=event.data or {})
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
