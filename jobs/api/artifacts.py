"""Serving a job's artifact files to the job's owner, with HTTP range requests for media players.

The URL's path after `artifacts/` is the file's key relative to the job (`a1/video.mp4` is the key
`jobs/<job id>/a1/video.mp4`); a request can never name a key outside the job (no `..`, no absolute paths,
no hidden or half-written `.partial` names). With the S3 store the answer is a 302 to a presigned URL
living ARTIFACT_URL_TTL_S seconds (ranges then go to the store); with the local store the file is streamed
from MEDIA_ROOT/jobs/<job id>/ (no symlinks out).

Bodies are asynchronous iterators of CHUNK_BYTES: under ASGI Django consumes a synchronous FileResponse or
generator whole (`sync_to_async(list)`), so every download and `<video>` range request loaded its file or
range into memory. Each chunk waits until the client's connection has taken the previous ones (daphne
backpressure, patches/daphne_backpressure.py), so a slow client holds a few chunks, not the file.
"""
from __future__ import annotations

import asyncio
import mimetypes
import re
from pathlib import Path
from typing import IO, Any, AsyncIterator

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from api.negotiation import AnyAcceptNegotiation
from api.schema import error_responses
from jobs.locations import artifact_key, artifact_url, job_media_dir
from jobs.models import GenerationJob
from jobs.store import ArtifactStore, StoreRefused, StoreUnavailable, get_store

from .views import JOB_ID, JobObjectMixin

CHUNK_BYTES = 64 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
# No file has more bytes than 18 digits can count; longer numbers would also pass Python's int-from-string
# digit limit (4,300) and raise. Such a range is ignored (RFC 9110 lets a server ignore Range).
_MAX_RANGE_DIGITS = 18


def clean_relative(relative: str) -> str:
    """`relative` as key parts joined by "/"; Http404 for anything that could leave the job's keys."""
    parts = [part for part in relative.replace("\\", "/").split("/") if part]
    if not parts or "\x00" in relative or any(part.startswith(".") for part in parts):
        raise Http404("no such artifact")
    return "/".join(parts)


def resolve_artifact_path(job: GenerationJob, relative: str, store: ArtifactStore) -> Path:
    """The local file holding `relative` inside the job's folder; Http404 for anything else."""
    key = artifact_key(job.pk, clean_relative(relative))
    base = job_media_dir(job.pk).resolve()
    local = store.local_path(key)
    try:
        target = local.resolve() if local is not None else None
    except (OSError, ValueError, RuntimeError):
        raise Http404("no such artifact") from None
    # resolve() follows symlinks, so this also stops a link pointing out of the folder.
    if target is None or not target.is_relative_to(base) or not target.is_file():
        raise Http404("no such artifact")
    return target


def artifact_content_type(job: GenerationJob, relative: str) -> str:
    """The type the pipeline recorded for this file, else a guess from its name."""
    artifacts = (job.result or {}).get("artifacts") if isinstance(job.result, dict) else None
    url = artifact_url(job.pk, relative)
    for item in artifacts or []:
        if (isinstance(item, dict) and item.get("content_type")
                and (item.get("url") == url or item.get("path") == relative)):
            return str(item["content_type"])
    return mimetypes.guess_type(relative)[0] or "application/octet-stream"


def in_result(job: GenerationJob, relative: str) -> bool:
    """Whether the job's result lists this file (then it was stored before the job completed)."""
    url = artifact_url(job.pk, relative)
    artifacts = (job.result or {}).get("artifacts") if isinstance(job.result, dict) else None
    return any(isinstance(item, dict) and item.get("url") == url for item in artifacts or [])


def redirect_to_store(job: GenerationJob, relative: str, store: ArtifactStore, content_type: str) -> HttpResponse:
    """302 to a presigned URL of the object; 404 when it is not stored; 503 when the store is down.

    A file the result lists is not looked up first (one round trip to the store saved per download);
    retention marks the result expired when it deletes the files, so such a URL is no longer listed.
    """
    key = artifact_key(job.pk, relative)
    try:
        if not in_result(job, relative) and not store.exists(key):
            raise Http404("no such artifact")
        url = store.presigned_url(key, ttl_s=settings.ARTIFACT_URL_TTL_S, content_type=content_type,
                                  filename=relative.rsplit("/", 1)[-1])
    except (StoreUnavailable, StoreRefused) as exc:
        response = HttpResponse(f"the artifact store is unavailable: {exc}", status=503, content_type="text/plain")
        response["Retry-After"] = "5"
        return response
    response = HttpResponseRedirect(url)
    # The URL expires: a cache must not keep the redirect longer than it works.
    response["Cache-Control"] = "private, no-store"
    return response


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(first, last) byte of a single `bytes=` range; None to ignore the header; False if unsatisfiable."""
    match = _RANGE.match(header or "")
    if not match or size == 0:  # an empty file has no byte to point at: send it whole
        return None
    first, last = match.groups()
    if first == "" and last == "" or max(len(first), len(last)) > _MAX_RANGE_DIGITS:
        return None
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            return False
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if start >= size:
        return False
    return start, end


async def _read_chunks(handle: IO[bytes], start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes from `start`, CHUNK_BYTES at a time, each read off the event loop."""
    await asyncio.to_thread(handle.seek, start)
    remaining = length
    while remaining > 0:
        chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        yield chunk


def _file_response(path: Path, start: int, length: int, status: int, content_type: str) -> StreamingHttpResponse:
    handle = open(path, "rb")
    response = StreamingHttpResponse(_read_chunks(handle, start, length), status=status, content_type=content_type)
    # Closed by Django once the response is done, even if the client left before the body started.
    response._resource_closers.append(handle.close)
    response["Content-Length"] = str(length)
    return response


def serve_file(request: Request, path: Path, content_type: str) -> HttpResponse:
    """200 with the whole file, 206 with one requested range, or 416 for a range past the end."""
    size = path.stat().st_size
    requested = parse_range(request.META.get("HTTP_RANGE", ""), size) if "HTTP_RANGE" in request.META else None
    if requested is False:
        response: HttpResponse = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    elif requested is None:
        response = _file_response(path, 0, size, 200, content_type)
    else:
        start, end = requested
        response = _file_response(path, start, end - start + 1, 206, content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@extend_schema(
    summary="Download one of a job's artifacts (supports Range requests)",
    parameters=[
        JOB_ID,
        OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH,
                         description="The artifact's path inside the job's folder, as in the job's result."),
        OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                         description="`bytes=first-last`, `bytes=first-` or `bytes=-suffix` (one range)."),
    ],
    responses={
        (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The whole file."),
        (206, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
        302: OpenApiResponse(description="With the S3 store: a presigned URL of the file (ARTIFACT_URL_TTL_S)."),
        (416, "*/*"): OpenApiResponse(description="The range starts past the end of the file."),
        **error_responses(401, 404),
    },
)
class JobArtifactView(JobObjectMixin, GenericAPIView):
    content_negotiation_class = AnyAcceptNegotiation
    pagination_class = None

    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        job = self.get_object()
        relative = clean_relative(str(kwargs.get("path", "")))
        store = get_store()
        content_type = artifact_content_type(job, relative)
        if store.local_path(artifact_key(job.pk, relative)) is None:
            return redirect_to_store(job, relative, store, content_type)
        return serve_file(request, resolve_artifact_path(job, relative, store), content_type)
