"""bench/run.py's record of a run: which commit, which machine, what load, and ratios to the same run's floor."""
from __future__ import annotations

import subprocess

from bench import run

ROOT = run.common.ROOT


def test_bench_run__records_the_commit_measured() -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    recorded = run.commit()
    assert recorded in (head, f"{head}-dirty")


def test_bench_run__records_the_machine() -> None:
    machine = run.machine()
    assert machine["hostname"] and machine["cpu_model"]
    assert machine["nproc"] >= 1 and len(machine["loadavg_at_start"]) == 3


def test_bench_run__command_names_quick_and_only(monkeypatch) -> None:
    monkeypatch.setenv("BENCH_QUICK", "1")
    monkeypatch.setenv("BENCH_ONLY", "push")
    assert run.command() == "BENCH_QUICK=1 BENCH_ONLY=push make bench"


def test_bench_run__latency_ratios_use_this_runs_floor_only() -> None:
    assert run.floor_ratios({"floor_ms": 0.5, "push_p50_ms": 1.5}) == {"push_vs_floor_ratio": 3.0}
    assert run.floor_ratios({"push_p50_ms": 1.5}) == {}  # no floor measured in this run: no ratio


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_bench_run__stops_descendants_in_sessions_of_their_own() -> None:
    """A child that started a grandchild in a new session (as bench/ws_fanout.py starts its daphnes): both stop."""
    import sys
    import time

    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True); "
              "print(p.pid, flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    run.common.stop_descendants(child.pid, timeout=5, include_self=True)
    child.wait(5)
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


class _Hangs:
    """A scenario that does not return within its timeout."""

    @staticmethod
    def run(env, quick):
        import time

        time.sleep(30)
        return {}


class _Env:
    resets = 0

    def reset(self) -> None:
        self.resets += 1


def test_bench_run__a_hanging_scenario_is_stopped_at_its_timeout(monkeypatch) -> None:
    import signal

    import pytest

    monkeypatch.setenv("BENCH_SCENARIO_TIMEOUT_S", "0.5")
    previous = signal.signal(signal.SIGALRM, run._raise_stopped)
    env = _Env()
    try:
        with pytest.raises(run.Stopped) as stopped:
            run.run_one(env, _Hangs, "floor", quick=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert stopped.value.signum == signal.SIGALRM
    assert env.resets == 1  # the scenario started from a clean state
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no timer left for what runs next
