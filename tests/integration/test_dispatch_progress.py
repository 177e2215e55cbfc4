"""The progress coalescer that keeps a stage at N events a second (pure logic with a fake clock)."""
from __future__ import annotations

from jobs.progress import ProgressCoalescer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(per_second: float = 10.0):
    sent: list[tuple[float, str]] = []
    clock = Clock()
    return ProgressCoalescer(lambda p, s: sent.append((p, s)), per_second=per_second, clock=clock), sent, clock


def test_progress_coalescer__first_report_goes_out_and_bursts_are_held():
    coalescer, sent, clock = make(per_second=10)

    for n in range(50):
        coalescer.report(n, "step")
        clock.now += 0.001  # 50 reports in 50 ms

    assert sent == [(0, "step")]
    assert coalescer.pending == (49, "step")


def test_progress_coalescer__at_most_the_rate_and_the_latest_value_wins():
    coalescer, sent, clock = make(per_second=10)

    for n in range(1000):  # 10 s at 100 reports a second
        coalescer.report(n / 10, "step")
        clock.now += 0.01
    coalescer.flush()

    assert len(sent) <= 10 * 10 + 2
    assert sent[-1] == (99.9, "step")


def test_progress_coalescer__final_value_is_never_coalesced():
    coalescer, sent, clock = make(per_second=1)
    coalescer.report(10, "a")

    coalescer.report(100, "done")

    assert sent == [(10, "a"), (100, "done")]


def test_progress_coalescer__flush_if_due_sends_a_held_value_once_allowed():
    coalescer, sent, clock = make(per_second=2)
    coalescer.report(1, "a")
    coalescer.report(2, "a")
    coalescer.flush_if_due()
    assert sent == [(1, "a")]

    clock.now += 0.5
    coalescer.flush_if_due()

    assert sent == [(1, "a"), (2, "a")] and coalescer.pending is None
