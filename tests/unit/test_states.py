"""The pure transition table: every allowed and every forbidden move."""
import itertools

import pytest

from jobs import states

ALLOWED = {
    ("queued", "processing"), ("queued", "cancelled"), ("queued", "failed"),
    ("processing", "completed"), ("processing", "failed"), ("processing", "cancelled"), ("processing", "queued"),
}
RETRY_ONLY = {("failed", "queued"), ("cancelled", "queued")}
ALL_PAIRS = list(itertools.product(states.STATUSES, states.STATUSES))


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_can_transition__matches_the_table(current: str, target: str) -> None:
    assert states.can_transition(current, target) == ((current, target) in ALLOWED)


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_can_transition__retry_adds_only_requeue_of_failed_and_cancelled(current: str, target: str) -> None:
    assert states.can_transition(current, target, retry=True) == ((current, target) in ALLOWED | RETRY_ONLY)


def test_terminal__completed_never_changes() -> None:
    assert not any(states.can_transition("completed", t, retry=True) for t in states.STATUSES)
    assert states.TERMINAL == {"completed", "failed", "cancelled"}
    assert states.is_terminal("cancelled") and not states.is_terminal("processing")
