"""`manage.py metrics reset|serve`: the deployment-side chores of the shared Prometheus directory."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops import metrics


class Command(BaseCommand):
    help = ("reset: empty PROMETHEUS_MULTIPROC_DIR (only before any web/worker process of this machine starts). "
            "serve: expose this machine's recorded metrics (e.g. a worker-only machine) for Prometheus.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["reset", "serve"])
        parser.add_argument("--port", type=int, default=9808, help="serve: port (default 9808)")
        parser.add_argument("--bind", default="0.0.0.0", help="serve: address (default 0.0.0.0)")

    def handle(self, *args: object, action: str, port: int, bind: str, **options: object) -> None:
        path = metrics.multiproc_dir()
        if not path:
            raise CommandError("PROMETHEUS_MULTIPROC_DIR is off; there is nothing to reset or serve")
        if action == "reset":
            metrics.reset(path)
            self.stdout.write(f"emptied {path}")
            return
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        # Job counts and queue depths are not served here: the web's /metrics has them (one scrape target).
        start_http_server(port, addr=bind, registry=registry)
        self.stdout.write(f"serving {path} on http://{bind}:{port}/metrics")
        while True:
            time.sleep(3600)
