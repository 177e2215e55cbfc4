"""Django's ASGI handler with the whole sync middleware chain and the view run in one thread hop per request.

Upstream (Django 5.2, `ASGIHandler` → `BaseHandler.load_middleware(is_async=True)`): every middleware that
can run both ways gets its process_request / process_response called through `sync_to_async`, and a
sync-only one (whitenoise) turns the chain back with `async_to_sync` in the middle, so a plain sync DRF
view costs about a dozen hand-offs between the event loop and a worker thread per request. Django ticket
#37177 (django/django#21523, open) reduces that per-middleware switching upstream. All our views and
middleware are synchronous, so here the chain is built synchronously (as under WSGI) and
`get_response_async` runs it, view included, in one `sync_to_async` call. Request parsing, streaming
responses, disconnects and the request signals stay Django's (`ASGIHandler.handle`); an async view would
still work (Django wraps it with async_to_sync in a sync chain), it would just gain nothing.
"""
from __future__ import annotations

import django
from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

from . import request_threads
from .versions import supported

PATCH = "django_asgi"
TESTED = {"Django": "==5.2.*"}


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = request_threads.RequestThreads() if request_threads.enabled() else None

    async def __call__(self, scope, receive, send) -> None:
        if self.threads is None or scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        await self.threads.run(lambda: self.handle(scope, receive, send))

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> ASGIHandler:
    """django.core.asgi.get_asgi_application, with the handler above within the tested Django series."""
    django.setup(set_prefix=False)
    return handler_class()()


def handler_class() -> type[ASGIHandler]:
    """SyncChainASGIHandler, or Django's own ASGIHandler outside the tested versions."""
    return SyncChainASGIHandler if supported(PATCH, TESTED) else ASGIHandler
