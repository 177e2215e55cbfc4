"""The API baseline's application: Django's stock ASGI handler (django.core.asgi), nothing of ours.

Served by plain `daphne` with DJANGO_SETTINGS_MODULE=bench.bare_settings (bench/api.py).
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bare_settings")
application = get_asgi_application()
