"""A bare Django for the API baseline: config.settings with one plain JSON view and CONN_MAX_AGE=0.

Served by a default `daphne bench.bare_asgi:application` (Django's stock ASGI handler; bench/api.py): no DRF, no
auth, no pool; the view reads one job row. What a minimal Django endpoint costs on this machine.
"""
from config.settings import *  # noqa: F401,F403
from config.settings import DATABASES

ROOT_URLCONF = "bench.bare_urls"
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
