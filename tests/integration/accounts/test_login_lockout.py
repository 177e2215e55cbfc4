"""Login throttling: failures per username and per address lock logins out with 429, before any hashing."""
from __future__ import annotations

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from tests.factories import make_user

GUESSES = 100


class CountingHasher(PBKDF2PasswordHasher):
    """PBKDF2 with few iterations (fast tests) that counts every password it hashes or checks."""

    iterations = 1000
    calls = 0

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        CountingHasher.calls += 1
        return super().encode(password, salt, iterations)


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    CountingHasher.calls = 0
    return CountingHasher


def _token(client: Client, username: str, password: str, address: str):
    return client.post("/api/auth/token/", {"username": username, "password": password},
                       content_type="application/json", REMOTE_ADDR=address)


@pytest.mark.django_db
def test_token_login__guesses_past_the_limit_get_429_without_hashing(settings, counting_hasher):
    # given a user under attack from one address
    victim = make_user(password="right-password-1")
    client = Client()
    limit = settings.AXES_FAILURE_LIMIT
    counting_hasher.calls = 0
    # when the attacker makes 100 guesses
    statuses = [_token(client, victim.username, f"guess-{n}", "10.0.0.1").status_code for n in range(GUESSES)]
    # then the guesses before the limit are plain failures, every later one is 429 naming when to retry
    assert statuses[: limit - 1] == [400] * (limit - 1)
    assert statuses[limit - 1:] == [429] * (GUESSES - limit + 1)
    # and only the guesses up to the limit cost a password hash
    assert counting_hasher.calls == limit
    response = _token(client, victim.username, "guess-again", "10.0.0.1")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "try again" in response.json()["detail"]


@pytest.mark.django_db
def test_token_login__another_user_from_another_address_still_logs_in(settings, counting_hasher):
    # given a user locked out by guesses from one address
    victim = make_user(password="right-password-1")
    other = make_user(password="right-password-2")
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _token(client, victim.username, f"guess-{n}", "10.0.0.1")
    # when another user logs in from another address
    response = _token(client, other.username, "right-password-2", "10.0.0.2")
    # then it works, while the attacked username stays locked from anywhere, and the address for anyone
    assert response.status_code == 200 and response.json()["token"]
    assert _token(client, victim.username, "right-password-1", "10.0.0.3").status_code == 429
    assert _token(client, other.username, "right-password-2", "10.0.0.1").status_code == 429


@pytest.mark.django_db
def test_token_login__guesses_spread_over_usernames_lock_the_address(settings, counting_hasher):
    # given one address guessing a different (unknown) username each time
    client = Client()
    limit = settings.AXES_FAILURE_LIMIT
    statuses = [_token(client, f"nobody{n}", "guess", "10.0.0.9").status_code for n in range(limit + 5)]
    # then the address is locked out after the limit
    assert statuses[-5:] == [429] * 5


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_page_login__guesses_past_the_limit_get_429(settings, counting_hasher, path):
    # given a staff user and the login page
    victim = make_user(password="right-password-1", staff=True)
    client = Client()
    limit = settings.AXES_FAILURE_LIMIT
    counting_hasher.calls = 0
    # when the form is posted with wrong passwords
    statuses = [client.post(path, {"username": victim.username, "password": f"guess-{n}"},
                            REMOTE_ADDR="10.0.0.1").status_code for n in range(limit + 5)]
    # then the page answers 429 (an HTML page saying when to retry) after the limit
    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert statuses[limit:] == [429] * 5
    response = client.post(path, {"username": victim.username, "password": "x"}, REMOTE_ADDR="10.0.0.1")
    assert b"Too many login attempts" in response.content and response["Retry-After"]
    assert counting_hasher.calls == limit
