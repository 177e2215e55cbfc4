"""Request bodies over the limit are refused with 413 at the server edge, before daphne buffers them.

Upstream (daphne 4.2, `WebRequest.process`): Twisted spools the whole body (a temporary file past 100 KB),
then daphne puts all of it on the application's queue at once, in memory, before Django runs, so Django's
DATA_UPLOAD_MAX_MEMORY_SIZE and DRF's parser limits come too late: a 1.5 GB anonymous POST grew the web
process by 1.5 GB. Here a declared Content-Length over the limit is answered before any body byte is read,
and a chunked body is cut as soon as it passes the limit. The connection then discards what the client
still sends for LINGER_S (so a client busy sending can read the 413, as nginx's lingering close does) and
closes. Limits: settings.HTTP_MAX_BODY_BYTES, and HTTP_MAX_BODY_BYTES_BY_PATH for routes that need more.
"""
from __future__ import annotations

import json
from typing import Any

from .versions import supported

PATCH = "daphne_body_limit"
TESTED = {"daphne": "==4.2.*", "twisted": ">=24.7,<27"}
LINGER_S = 2.0
DEFAULT_LIMIT = 4 * 1024 * 1024


def body_limit(raw_target: bytes) -> int:
    """The body limit for a request target (`/path?query`): the longest matching path prefix's, or the default."""
    from django.conf import settings

    path = raw_target.split(b"?", 1)[0].decode("latin-1")
    limit = int(getattr(settings, "HTTP_MAX_BODY_BYTES", DEFAULT_LIMIT))
    by_path = getattr(settings, "HTTP_MAX_BODY_BYTES_BY_PATH", None) or {}
    matches = [prefix for prefix in by_path if path.startswith(prefix)]
    return int(by_path[max(matches, key=len)]) if matches else limit


def refusal(limit: int) -> bytes:
    """The whole 413 response, written straight to the connection (no request object is finished)."""
    body = json.dumps({"detail": f"Request body is larger than the limit of {limit} bytes."}).encode()
    return (b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def _refuse(request: Any, limit: int) -> None:
    from twisted.internet import reactor

    if request.__dict__.get("_vg_refused"):
        return
    request._vg_refused = True
    request.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after our answer
    channel = request.channel
    transport = getattr(channel, "transport", None)
    if channel is None or transport is None:
        return
    channel.dataReceived = _discard  # everything the client still sends is dropped unread, never parsed
    channel.setTimeout(None)
    transport.write(refusal(limit))
    reactor.callLater(LINGER_S, _close, transport)


def _discard(data: bytes) -> None:
    return None


def _close(transport: Any) -> None:
    if getattr(transport, "connected", False):
        transport.abortConnection()  # the answer was sent long ago; don't wait for a sender that won't stop


def install_body_limit() -> None:
    """Patch daphne's WebRequest to count body bytes as they arrive and refuse past the limit."""
    if not supported(PATCH, TESTED):
        return
    from daphne.http_protocol import WebRequest

    got_length, handle_chunk, process = WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process

    def gotLength(self: WebRequest, length: int | None) -> None:
        self._vg_limit = body_limit(getattr(self.channel, "_path", b"/") or b"/")
        self._vg_read = 0
        if length is not None and length > self._vg_limit:
            from io import BytesIO

            self.content = BytesIO()
            _refuse(self, self._vg_limit)
            return
        got_length(self, length)

    def handleContentChunk(self: WebRequest, data: bytes) -> None:
        if self.__dict__.get("_vg_refused"):
            return
        self._vg_read += len(data)
        if self._vg_read > self._vg_limit:  # a chunked body (or more than declared) passed the limit
            _refuse(self, self._vg_limit)
            return
        handle_chunk(self, data)

    def process_unless_refused(self: WebRequest) -> Any:
        if self.__dict__.get("_vg_refused"):
            return None  # answered already: the application never sees this request
        return process(self)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.process = process_unless_refused
