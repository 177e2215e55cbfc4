"""How a stage reports progress and notices cancellation, without knowing about Celery or Channels."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

Item = TypeVar("Item")


@runtime_checkable
class StageContext(Protocol):
    """Progress is 0..100 of the current stage; `check_cancelled` raises JobCancelled when asked to stop."""

    def report(self, progress: float, stage: str) -> None: ...

    def check_cancelled(self) -> None: ...


class ScaledContext:
    """Maps a sub-step's 0..100 onto `start..end` of the parent's range, passing stage text through."""

    def __init__(self, parent: StageContext, start: float, end: float) -> None:
        if not 0.0 <= start <= end <= 100.0:
            raise ValueError(f"need 0 <= start <= end <= 100, got {start}..{end}")
        self.parent = parent
        self.start = start
        self.end = end

    def report(self, progress: float, stage: str) -> None:
        # Clamp so a stage overshooting (rounding, ffmpeg's last frame) never leaks into the next range.
        clamped = min(100.0, max(0.0, float(progress)))
        self.parent.report(self.start + (self.end - self.start) * clamped / 100.0, stage)

    def check_cancelled(self) -> None:
        self.parent.check_cancelled()


def each_reported(items: Sequence[Item], ctx: StageContext, label: str) -> Iterator[Item]:
    """The items in order for a stage that makes one artifact each: a cancel is checked before each, and
    "<label> (n/total)" reported at 0 and after each (the report runs when the loop asks for the next one)."""
    total = len(items)
    ctx.report(0.0, f"{label} (0/{total})")
    for done, item in enumerate(items, start=1):
        ctx.check_cancelled()
        yield item
        ctx.report(done / total * 100.0, f"{label} ({done}/{total})")
