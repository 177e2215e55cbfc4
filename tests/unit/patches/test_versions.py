"""The version guard shared by every patch, and the helper that pins each patch to requirements.txt."""
from __future__ import annotations

import re
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from patches import versions

REQUIREMENTS = Path(__file__).resolve().parents[3] / "requirements.txt"


def pinned(distribution: str) -> Version:
    """The version requirements.txt pins for `distribution`."""
    wanted = re.sub(r"[-_.]+", "-", distribution).lower()
    for line in REQUIREMENTS.read_text().splitlines():
        name, _, version = line.partition("==")
        if re.sub(r"[-_.]+", "-", name.strip()).lower() == wanted:
            return Version(version.split(";")[0].strip())
    raise AssertionError(f"{distribution} is not pinned in requirements.txt")


def covers(tested: dict[str, str], distribution: str) -> bool:
    """Whether a patch's tested range includes the version we pin (a bump must re-test the patch)."""
    return pinned(distribution) in SpecifierSet(tested[distribution])


def test_supported__inside_every_range_applies_without_a_warning(installed, caplog) -> None:
    installed(alpha="1.4.2", beta="2.0")
    assert versions.supported("probe", {"alpha": "==1.4.*", "beta": ">=2,<3"})
    assert "probe" not in caplog.text


def test_supported__one_distribution_outside_refuses_and_says_why(installed, caplog) -> None:
    installed(alpha="1.5.0", beta="2.0")
    assert not versions.supported("probe", {"alpha": "==1.4.*", "beta": ">=2,<3"})
    assert "probe not applied" in caplog.text and "alpha 1.5.0 is outside the tested versions ==1.4.*" in caplog.text


def test_supported__a_missing_distribution_refuses() -> None:
    assert not versions.supported("probe", {"surely-not-installed-here": ">=0"})


def test_supported__decided_once_per_process(installed, caplog) -> None:
    installed(alpha="1.5.0")
    assert not versions.supported("probe", {"alpha": "==1.4.*"})
    installed(alpha="1.4.0")
    assert not versions.supported("probe", {"alpha": "==1.4.*"})
    assert caplog.text.count("probe not applied") == 1
