"""`GET /api/jobs/{id}/stream/` and `GET /api/projects/{id}/stream/`: Server-Sent Events (realtime/sse.py).

The views are ordinary synchronous DRF views, so authentication (token or session), the owner check and
the 401 / 404 / 400 answers are the API's own and cost the usual one thread hop. What they return is a
StreamingHttpResponse over an async generator: Django's ASGI handler iterates it on the event loop after
the view has returned, so the open stream itself holds no thread and no database connection. (An async
view would gain nothing: the sync middleware chain runs it through async_to_sync in a thread anyway.)
Under WSGI the async generator could not be served; production runs daphne (config/asgi.py).
"""
from __future__ import annotations

import re
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from api.negotiation import AnyAcceptNegotiation
from api.pagination import single_query_value
from api.schema import error_responses
from jobs import selectors as job_selectors
from projects.selectors import project_get_for_user

from . import layer_down, sse
from .sse_access import access_check
from .sse_limits import stream_slot_take, streams_per_user

SEQ_MAX = 2**31 - 1  # JobEvent.seq is a PositiveIntegerField
_DIGITS = re.compile(r"[0-9]{1,10}")

STREAM_DESCRIPTION = (
    "A `text/event-stream`. Each event has `id: <seq>` (status events), `event: status` or `event: artifact` "
    "and `data:` the websocket message as JSON, e.g.\n\n"
    "```\nid: 7\nevent: status\ndata: {\"type\": \"status\", \"job_id\": \"…\", \"status\": \"processing\", "
    "\"progress\": 42.0, \"current_stage\": \"Generating images\", \"error_message\": null, \"seq\": 7, "
    "\"result\": null}\n\n```\n"
    "A comment line (`: keep-alive`) follows every 15 s without events."
)
EVENT_STREAM = OpenApiResponse(OpenApiTypes.STR, description=STREAM_DESCRIPTION)
SEQ_SCHEMA = {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}
LAST_EVENT_ID = OpenApiParameter(
    "Last-Event-ID", SEQ_SCHEMA, OpenApiParameter.HEADER, required=False,
    description="Replay every event after this seq first (EventSource sends it when it reconnects).")
AFTER_SEQ = OpenApiParameter(
    "after_seq", SEQ_SCHEMA, OpenApiParameter.QUERY, required=False,
    description="The same as `Last-Event-ID`, for clients that cannot set headers (the header wins).")


def _seq_value(raw: str, name: str) -> int:
    if not _DIGITS.fullmatch(raw.strip()) or int(raw) > SEQ_MAX:
        raise exceptions.ValidationError({name: [f"Must be an integer from 0 to {SEQ_MAX}."]})
    return int(raw)


def resume_after(request: Request) -> int | None:
    """The seq to replay after: the Last-Event-ID header, else `?after_seq=`, else None (send a snapshot)."""
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        return _seq_value(header, "Last-Event-ID")
    query = single_query_value(request, "after_seq")
    return None if query is None else _seq_value(query, "after_seq")


class TooManyStreams(exceptions.Throttled):
    def __init__(self) -> None:
        super().__init__(wait=5, detail=f"You have {streams_per_user()} streams open on this server; "
                                        "close one first.")


def event_stream_response(request: Request, stream: Any) -> StreamingHttpResponse:
    """The stream as `text/event-stream`, counted against the user's SSE_STREAMS_PER_USER (else 429); 503 while
    the channel layer cannot subscribe it (realtime/layer_down.py)."""
    layer_down.require_layer()
    counted = stream_slot_take(user_id=request.user.pk, stream=stream)
    if counted is None:
        raise TooManyStreams()
    response = StreamingHttpResponse(counted, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on at once instead of buffering them
    return response


class EventStreamView(APIView):
    """The API's auth and errors; `Accept: text/event-stream` (EventSource's) must not be a 406."""

    content_negotiation_class = AnyAcceptNegotiation


class JobStreamView(EventStreamView):
    @extend_schema(
        summary="Follow a job as Server-Sent Events",
        parameters=[OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id."),
                    LAST_EVENT_ID, AFTER_SEQ],
        responses={(200, "text/event-stream"): EVENT_STREAM, **error_responses(400, 401, 404, 429, 503)},
        description="Sends the job's snapshot (or, with `Last-Event-ID` / `after_seq`, every recorded event "
                    "after that seq), then each change live, in seq order and once each; the stream ends "
                    "after the job reaches a terminal status.",
    )
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        job = job_selectors.job_get_for_user(job_id=job_id, user=request.user)  # JobNotFound -> 404
        after_seq = resume_after(request)
        return event_stream_response(request, sse.job_stream(
            job_id=str(job.pk), after_seq=after_seq, allowed=access_check(request)))


class ProjectStreamView(EventStreamView):
    @extend_schema(
        summary="Follow every job of a project as Server-Sent Events",
        parameters=[OpenApiParameter("project_id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                                     description="The project's id.")],
        responses={(200, "text/event-stream"): EVENT_STREAM, **error_responses(401, 404, 429, 503)},
        description="Sends a snapshot of each of the project's 100 newest jobs, then every change of any of "
                    "its jobs live (no replay: `seq` numbers are per job). The stream stays open.",
    )
    def get(self, request: Request, project_id: str) -> StreamingHttpResponse:
        project = project_get_for_user(project_id=project_id, user=request.user)  # ProjectNotFound -> 404
        return event_stream_response(request, sse.project_stream(
            project_id=str(project.pk), allowed=access_check(request)))
