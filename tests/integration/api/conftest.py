"""Fixtures for the REST API tests: clients authenticated by token or session."""
from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def client_for(db):
    """client_for(user) -> an APIClient sending that user's token (None: anonymous)."""

    def make(user) -> APIClient:
        return token_client(user) if user is not None else APIClient()

    return make


@pytest.fixture
def api(user) -> APIClient:
    return token_client(user)


@pytest.fixture
def project(user):
    from tests.factories import make_project

    return make_project(owner=user)


@pytest.fixture
def job(project):
    from tests.factories import make_job

    return make_job(project=project)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
