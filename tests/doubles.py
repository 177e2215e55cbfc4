"""Stand-ins for the pipeline's StageContext in tests and benchmarks (the real one is jobs.worker's)."""
from __future__ import annotations

import threading

from jobs.pipeline import JobCancelled


class NullContext:
    """Ignores progress and is never cancelled (benchmarks, one-off runs)."""

    def report(self, progress: float, stage: str) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


class RecordingContext:
    """Records reports; cancels after `cancel_after_checks` passing checks or once `cancel_event` is set."""

    def __init__(
        self,
        *,
        cancel_after_checks: int | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        self.reports: list[tuple[float, str]] = []
        self.checks = 0
        self.cancel_after_checks = cancel_after_checks
        self.cancel_event = cancel_event if cancel_event is not None else threading.Event()
        # Stages may report from helper threads; the lock keeps the list consistent.
        self._lock = threading.Lock()

    def report(self, progress: float, stage: str) -> None:
        with self._lock:
            self.reports.append((progress, stage))

    def check_cancelled(self) -> None:
        with self._lock:
            self.checks += 1
            over_limit = self.cancel_after_checks is not None and self.checks > self.cancel_after_checks
        if over_limit or self.cancel_event.is_set():
            raise JobCancelled()

    def cancel(self) -> None:
        """Make the next `check_cancelled` raise."""
        self.cancel_event.set()

    @property
    def stages(self) -> list[str]:
        """Distinct stage texts in the order they were first reported."""
        with self._lock:
            return list(dict.fromkeys(stage for _, stage in self.reports))
