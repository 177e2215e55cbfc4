"""API tokens are refused at once, by every process, when revoked in any way: no per-process cache."""
from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import make_job

pytestmark = pytest.mark.django_db


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def owned():
    job = make_job()
    token = Token.objects.create(user=job.project.owner)
    client = _client(token.key)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    return job, token, client


def test_token__user_deactivated_by_a_queryset_update_is_refused_at_once(owned):
    # given a client that was just served; when the user is deactivated without any signal (as another process might)
    job, token, client = owned
    type(token.user).objects.filter(pk=token.user_id).update(is_active=False)
    # then its next request is refused
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 401


def test_token__password_change_revokes_the_users_tokens(owned):
    # given a served client; when the owner changes the password
    job, token, client = owned
    owner = token.user
    owner.set_password("a-new-password-42")
    owner.save()
    # then the old token is gone and refused; a new login gets a new token
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 401
    assert not Token.objects.filter(user=owner).exists()
    answer = APIClient().post("/api/auth/token/", {"username": owner.username, "password": "a-new-password-42"},
                              format="json")
    assert answer.status_code == 200 and _client(answer.json()["token"]).get(f"/api/jobs/{job.pk}/").status_code == 200


def test_token__saving_other_fields_keeps_the_tokens(owned):
    job, token, client = owned
    owner = token.user
    owner.first_name = "Ada"
    owner.save()
    owner.save(update_fields=["last_login"])
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
