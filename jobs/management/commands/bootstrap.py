"""Idempotent first-start setup for `make run`: the demo staff login and the periodic tasks."""
from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo staff user on first start and the periodic maintenance tasks."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: object, url: str, **options: object) -> None:
        User = get_user_model()
        credentials = settings.VAR_DIR / "demo-login.txt"
        password = None
        if not User.objects.exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("demo", "demo@example.com", password)
            credentials.write_text(f"demo {password}\n")
            credentials.chmod(0o600)
        call_command("setup_periodic_tasks", verbosity=0)
        self.stdout.write(f"Open {url}")
        # The password is printed once, when it is made: every later start's output (terminals, CI and
        # process-manager logs) would otherwise repeat a staff password.
        if password is not None:
            self.stdout.write(f"Demo login (staff): demo / {password}  (also in {credentials})")
        elif credentials.exists():
            self.stdout.write(f"Demo login (staff): demo, password in {credentials}")
