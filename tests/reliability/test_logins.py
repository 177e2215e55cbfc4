"""Password guessing against a real daphne: refused with 429 after the limit; others still log in."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from rest_framework.authtoken.models import Token

from tests.factories import make_user

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

GUESSES = 100
LOGINS = 4
User = get_user_model()


def _client(port: int, source: str) -> httpx.Client:
    # Two honest client addresses: loopback is all of 127.0.0.0/8, so binding the client's socket to
    # 127.0.0.2 makes daphne see REMOTE_ADDR 127.0.0.2 (no forwarded header is trusted).
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                        transport=httpx.HTTPTransport(local_address=source))


def test_logins__100_guesses_get_429_after_the_limit_and_another_user_logs_in_from_another_address(processes, settings):
    # given a web process and two users, one of them under attack from 127.0.0.1
    port = processes.start_daphne()
    victim = make_user(password="victim-password-1")
    other = make_user(password="other-password-2")
    limit = settings.AXES_FAILURE_LIMIT

    # when the attacker makes 100 guesses at the token endpoint
    with _client(port, "127.0.0.1") as attacker:
        statuses = [attacker.post("/api/auth/token/", json={"username": victim.username, "password": f"guess{n}"})
                    .status_code for n in range(GUESSES)]
        attacker.get("/accounts/login/")  # the CSRF cookie
        page = attacker.post("/accounts/login/", data={
            "username": victim.username, "password": "guess", "csrfmiddlewaretoken": attacker.cookies["csrftoken"]})

    # then every guess from the limit on is refused with 429, the login page too
    assert statuses[: limit - 1] == [400] * (limit - 1)
    assert statuses[limit - 1:] == [429] * (GUESSES - limit + 1)
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 0
    # and the other user, from another address, still gets a token with the right password
    with _client(port, "127.0.0.2") as honest:
        response = honest.post("/api/auth/token/", json={"username": other.username, "password": "other-password-2"})
    assert response.status_code == 200 and response.json()["token"]


def test_logins__password_checks_at_full_rounds_do_not_hold_up_the_process_other_requests(processes):
    # given a web process, users whose passwords are hashed at Django's own rounds (0.4 CPU-s a check here,
    # not the suite's fast hasher), and another user with a token
    port = processes.start_daphne()
    slow_hash = PBKDF2PasswordHasher().encode("right-password", PBKDF2PasswordHasher().salt())
    guessed = [make_user() for _ in range(LOGINS)]
    User.objects.filter(pk__in=[user.pk for user in guessed]).update(password=slow_hash)
    token = Token.objects.create(user=make_user()).key
    finished: list[tuple[str, float]] = []
    started = threading.Barrier(LOGINS + 1)

    def log_in(user) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            started.wait(30)
            response = client.post("/api/auth/token/", json={"username": user.username, "password": "wrong"})
        finished.append(("login", time.monotonic()))
        assert response.status_code == 400, response.text

    # when a few logins are being checked and, meanwhile, the other user lists their jobs (a synchronous view)
    with ThreadPoolExecutor(LOGINS) as pool:
        logins = [pool.submit(log_in, user) for user in guessed]
        started.wait(30)
        time.sleep(0.2)  # the logins are in the web process, their checks running
        listed = httpx.get(f"http://127.0.0.1:{port}/api/jobs/", headers={"Authorization": f"Token {token}"},
                           timeout=60)
        finished.append(("list", time.monotonic()))
        for login in logins:
            login.result()

    # then the list is answered before any login: each request runs its synchronous code on a thread of its
    # own (Django's ASGI handler gives every request its own ThreadSensitiveContext) and hashlib's PBKDF2
    # releases the GIL, so a flood of logins costs CPU but never holds up another user's request
    assert listed.status_code == 200
    assert [name for name, _ in sorted(finished, key=lambda item: item[1])][0] == "list", finished
