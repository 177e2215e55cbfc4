"""The version guard every patch goes through: apply only within the release series it was tested with."""
from __future__ import annotations

import importlib.metadata
import logging
from typing import Mapping

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

logger = logging.getLogger("patches")

_decided: dict[str, bool] = {}


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution`, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def supported(patch: str, tested: Mapping[str, str]) -> bool:
    """Whether `patch` may be applied: every distribution in `tested` is installed within its specifier.

    Decided once per process (the answer cannot change while it runs); a refusal is logged once, naming
    the distribution, its version and the tested range.
    """
    if patch not in _decided:
        reason = _refusal(tested)
        if reason:
            logger.warning("patches: %s not applied, stock behaviour kept: %s", patch, reason)
        _decided[patch] = not reason
    return _decided[patch]


def forget_decisions() -> None:
    """Decide again on the next call (tests that install another version)."""
    _decided.clear()


def _refusal(tested: Mapping[str, str]) -> str:
    for distribution, specifier in tested.items():
        version = installed_version(distribution)
        if version is None:
            return f"{distribution} is not installed"
        try:
            inside = Version(version) in SpecifierSet(specifier)
        except InvalidVersion:
            inside = False
        if not inside:
            return f"{distribution} {version} is outside the tested versions {specifier}"
    return ""
