"""Coalesce a stage's progress reports to at most N events a second per job, never losing the latest.

A stage may report hundreds of times a second (ffmpeg's progress pipe); every report would otherwise be
a row lock, a JobEvent and a websocket push. Reports that arrive too soon are held as "pending" and sent
on the next report or check that is due, and always by `flush()` at the end of the stage.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from ops import metrics

# sink(progress, stage) sends one report to the job service.
Sink = Callable[[float, str], None]


class ProgressCoalescer:
    """Rate-limits `report` calls into `sink`; the first and the final (100) report are sent at once."""

    def __init__(self, sink: Sink, *, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.clock = clock
        self._last_sent_at: float | None = None
        self._pending: tuple[float, str] | None = None
        # Stages may report from helper threads (ffmpeg's reader); one lock keeps "pending" consistent.
        self._lock = threading.Lock()
        self.sent = 0

    def report(self, progress: float, stage: str) -> None:
        """Send now if due (or final), else keep it as the pending value (replacing an older one)."""
        with self._lock:
            if self._pending is not None:  # the held value is replaced: one update merged away
                metrics.count_coalesced()
            self._pending = (progress, stage)
            if progress >= 100.0 or self._is_due():
                self._send_pending()

    def flush_if_due(self) -> None:
        """Send a held value once the rate allows (called from `check_cancelled` and the heartbeat)."""
        with self._lock:
            if self._pending is not None and self._is_due():
                self._send_pending()

    def flush(self) -> None:
        """Send the held value regardless of the rate (end of stage: the latest value is never lost)."""
        with self._lock:
            if self._pending is not None:
                self._send_pending()

    @property
    def pending(self) -> tuple[float, str] | None:
        return self._pending

    def _is_due(self) -> bool:
        return self._last_sent_at is None or self.clock() - self._last_sent_at >= self.interval

    def _send_pending(self) -> None:
        assert self._pending is not None
        progress, stage = self._pending
        self._pending = None
        self._last_sent_at = self.clock()
        self.sent += 1
        self.sink(progress, stage)
