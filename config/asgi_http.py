"""Django's ASGI handler with the whole middleware chain and the view run in one thread hop per request.

Django's own ASGIHandler builds an async middleware chain: every middleware that can run both ways runs its
process_request and process_response through `sync_to_async`, and whitenoise (sync only) turns the chain
back with `async_to_sync` in the middle. For a plain sync DRF view that is about a dozen hand-offs between
the event loop and a worker thread per request (docs/BENCHMARKS.md, API). All our views and middleware are
synchronous, so here the chain is built synchronously (as under WSGI) and `get_response_async` runs it, view
included, in one `sync_to_async` call. Request parsing, streaming responses, disconnects and the request
signals stay Django's (ASGIHandler.handle); an async view would still work (Django wraps it with
async_to_sync in a sync chain), it would just not gain anything.
"""
from __future__ import annotations

import django
from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> SyncChainASGIHandler:
    """django.core.asgi.get_asgi_application, with the handler above."""
    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
