"""The API's token cache: same answers as DRF's TokenAuthentication, and revocation still takes effect."""
from __future__ import annotations

import time

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api import authentication as api_glue
from tests.factories import make_job, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_cached_token__serves_the_owner_and_no_one_else(settings, django_assert_num_queries) -> None:
    settings.API_TOKEN_CACHE_S = 60
    job = make_job()
    token = Token.objects.create(user=job.project.owner)
    other = Token.objects.create(user=make_user())
    client = client_for(token.key)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    with django_assert_num_queries(1):  # the job only: the token was remembered
        assert client.get(f"/api/jobs/{job.pk}/").json()["id"] == str(job.pk)
    assert client_for(other.key).get(f"/api/jobs/{job.pk}/").status_code == 404
    assert client_for("0" * 40).get(f"/api/jobs/{job.pk}/").status_code == 401


def test_cached_token__deleted_token_or_inactive_user_refused_at_once_in_process(settings) -> None:
    settings.API_TOKEN_CACHE_S = 60
    job = make_job()
    owner = job.project.owner
    token = Token.objects.create(user=owner)
    client = client_for(token.key)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    owner.is_active = False
    owner.save()
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 401
    owner.is_active = True
    owner.save()
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    token.delete()
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 401


def test_cached_token__another_process_revocation_counts_after_the_ttl(settings) -> None:
    settings.API_TOKEN_CACHE_S = 0.5
    job = make_job()
    token = Token.objects.create(user=job.project.owner)
    client = client_for(token.key)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    Token.objects.filter(key=token.key).delete()  # a queryset delete sends signals too; bypass them:
    api_glue._token_cache[token.key] = (time.monotonic() + 0.5, job.project.owner, token)  # as another process
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200  # within the TTL: still remembered
    time.sleep(0.6)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 401


def test_cached_token__off_with_zero(settings, django_assert_num_queries) -> None:
    settings.API_TOKEN_CACHE_S = 0
    job = make_job()
    token = Token.objects.create(user=job.project.owner)
    client = client_for(token.key)
    client.get(f"/api/jobs/{job.pk}/")
    with django_assert_num_queries(2):
        assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    assert api_glue._token_cache == {}
