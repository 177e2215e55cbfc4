"""Password guessing against a real daphne: refused with 429 after the limit; others still log in."""
from __future__ import annotations

import httpx
import pytest

from tests.factories import make_user

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

GUESSES = 100


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
