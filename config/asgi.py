"""ASGI entry point: HTTP through Django, websockets through realtime's auth and routing."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from patches.django_asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

# These need Django set up first.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from patches.django_asgi_streams import StreamsWithoutThreadContext  # noqa: E402
from realtime.middleware import WebsocketAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Server-Sent Events streams hold no thread while open (patches/django_asgi_streams.py).
        "http": StreamsWithoutThreadContext(django_asgi_app),
        # `?token=` clients skip the Origin check; session-cookie clients must come from an allowed Origin.
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
