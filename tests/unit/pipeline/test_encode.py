"""The ffmpeg driver's progress parsing, error mapping and pipe handling, with a stand-in process."""
from __future__ import annotations

import sys
import textwrap

import pytest

from jobs.pipeline import JobCancelled, PermanentError
from jobs.pipeline.video import encode
from tests.doubles import RecordingContext


def _fake_ffmpeg(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_encode__reports_progress_from_out_time_lines() -> None:
    cmd = _fake_ffmpeg(
        """
        for us in (0, 1_000_000, 2_000_000):
            print(f"out_time_us={us}\\nout_time_ms={us}\\nout_time=00:00:0{us // 1_000_000}.000000\\nprogress=continue", flush=True)
        print("out_time_us=N/A\\nprogress=end", flush=True)
        """
    )
    ctx = RecordingContext()
    encode(cmd, 4.0, ctx)
    assert [p for p, _ in ctx.reports] == [0.0, 25.0, 50.0, 50.0]
    assert {stage for _, stage in ctx.reports} == {"Encoding video"}


def test_encode__old_ffmpeg_with_only_out_time_ms() -> None:
    cmd = _fake_ffmpeg('print("out_time_ms=1000000\\nprogress=continue\\nout_time_ms=3000000\\nprogress=end", flush=True)')
    ctx = RecordingContext()
    encode(cmd, 4.0, ctx)
    assert [p for p, _ in ctx.reports] == [25.0, 75.0]


def test_encode__failure_keeps_stderr_tail_as_detail_and_does_not_deadlock() -> None:
    # Far more stderr than a pipe buffer holds: without a reader thread this would hang.
    cmd = _fake_ffmpeg(
        """
        import sys
        for i in range(20000):
            sys.stderr.write(f"noise line {i}\\n")
        sys.stderr.write("Error: something specific broke\\n")
        sys.exit(1)
        """
    )
    with pytest.raises(PermanentError) as info:
        encode(cmd, 1.0, RecordingContext())
    assert info.value.message == "video encoding failed"
    assert info.value.detail.endswith("Error: something specific broke")
    assert "noise line 0\n" not in info.value.detail


def test_encode__cancel_while_the_process_is_silent() -> None:
    cmd = _fake_ffmpeg("import time; time.sleep(30)")
    ctx = RecordingContext(cancel_after_checks=2)
    with pytest.raises(JobCancelled):
        encode(cmd, 30.0, ctx)
