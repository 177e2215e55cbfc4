"""Each patch test decides its patch's guard afresh, against the versions it installs."""
from __future__ import annotations

from typing import Callable

import pytest

from patches import versions


@pytest.fixture(autouse=True)
def _fresh_decisions():
    versions.forget_decisions()
    yield
    versions.forget_decisions()


@pytest.fixture
def installed(monkeypatch) -> Callable[..., None]:
    """installed(channels="9.0") makes the guards see that version of each named distribution."""

    def install(**fake: str) -> None:
        real = versions.installed_version
        names = {name.replace("_", "-").lower(): version for name, version in fake.items()}
        monkeypatch.setattr(versions, "installed_version",
                            lambda dist: names.get(dist.replace("_", "-").lower()) or real(dist))

    return install
