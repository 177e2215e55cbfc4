"""Run one quick bench scenario and py-spy the processes that limit it; summarise each profile.

    .venv/bin/python -m bench.profile push|fanout|throughput|api     (needs root or ptrace rights)

Each scenario runs as `BENCH_QUICK=1 BENCH_ONLY=<scenario> python -m bench.run` with its figures written to
var/bench/profiles/<scenario>.json (never over var/bench/results.json). A target is attached when its process
appears (matched by command line among processes carrying this run's BENCH_PROFILE_TAG), after `delay`
seconds, for `duration` seconds (None: until it exits). Profiles are py-spy raw (collapsed) stacks in
var/bench/profiles/<scenario>-<target>.txt, summarised into .summary files by bench/profile_summary.py.
py-spy is not a project requirement: `pip install py-spy`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench" / "profiles"
PYSPY = Path(sys.executable).parent / "py-spy"


@dataclass
class Target:
    name: str
    pattern: str  # substring of the command line; "@run" is the bench.run process itself
    delay: float
    duration: float | None
    nth: int = 1  # the nth process matching (e.g. the second daphne)
    subprocesses: bool = False
    idle: bool = False  # include waiting threads: for latency, where the wall time goes
    grep: list[str] = field(default_factory=list)  # extra summaries restricted to stacks containing these


# Timings fit the quick scenarios on a 2-core box: skip the connect storm, sample the measured phase.
TARGETS: dict[str, list[Target]] = {
    # push: 1,000 sockets connect (~5-9 s), then 10 s of 100 updates/s. The reporter is the bench process.
    "push": [
        Target("daphne", "-m patches.daphne", 11, 8, idle=False),
        Target("reporter", "@run", 0, None, idle=True,
               grep=["job_report_progress", "_sender", "report_updates"]),
    ],
    # fanout: ws_fanout.py runs the core layer's daphne first, then pub/sub's (the production one). The 1,000
    # handshakes take ~8-11 s after daphne starts (~2 s); the last 6 s are 3 s of publishing and 3 s of grace.
    "fanout": [
        Target("daphne-core", "bin/daphne", 13, 6, nth=1, grep=["close_old_connections", "job_status"]),
        Target("daphne-pubsub", "-m patches.daphne", 11, 6, nth=1, grep=["_dispatch_all", "job_status"]),
    ],
    # throughput: the production worker (recycling every 10 tasks), then the no-recycle worker; pool children too.
    "throughput": [
        Target("worker", "celery -A config worker", 0, None, nth=1, subprocesses=True,
               grep=["raw_noop_task", "result_noop_task", "run_stage", "Popen.__init__", "flood_job_task"]),
        Target("worker-norecycle", "celery -A config worker", 0, None, nth=2, subprocesses=True,
               grep=["raw_noop_task", "result_noop_task", "run_stage"]),
    ],
    "api": [Target("daphne", "-m patches.daphne", 5, 5)],
    # time_to_start: where a POST /api/jobs/ and the job's start spend their wall time (idle=True: waits count).
    "time_to_start": [
        Target("daphne", "-m patches.daphne", 0, None, idle=True,
               grep=["job_create", "dispatch_job", "admit", "apply_async"]),
        Target("worker", "celery -A config worker", 0, None, subprocesses=True, idle=True,
               grep=["claim_job", "job_start", "latency_task"]),
    ],
}


def _matching(pattern: str, tag: str, seen: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in seen:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"DJANGO_SETTINGS_MODULE=bench.bare_settings" in environ:
            continue  # the API scenario's baseline server, not ours
        if pattern in cmdline and f"BENCH_PROFILE_TAG={tag}".encode() in environ:
            if pattern not in _cmdline(_ppid(entry)):  # a forked pool child shares its parent's command line
                pids.append(int(entry.name))
    return sorted(pids)


def _ppid(entry: Path) -> int:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _attach(target: Target, scenario: str, tag: str, run: subprocess.Popen) -> None:
    """Find the target's process, wait, record, summarise."""
    if target.pattern == "@run":
        pid = run.pid
    else:
        seen: set[int] = set()
        found: list[int] = []
        while len(found) < target.nth and run.poll() is None:
            new = _matching(target.pattern, tag, seen)
            seen.update(new)
            found.extend(new)
            time.sleep(0.1)
        if len(found) < target.nth:
            print(f"{target.name}: process not found", file=sys.stderr)
            return
        pid = found[target.nth - 1]
    time.sleep(target.delay)
    raw = OUT / f"{scenario}-{target.name}.txt"
    command = [str(PYSPY), "record", "--nonblocking", "-r", "100", "-f", "raw", "-o", str(raw), "--pid", str(pid)]
    if target.duration is not None:
        command += ["-d", str(int(target.duration))]
    if target.subprocesses:
        command.append("--subprocesses")
    if target.idle:
        command.append("--idle")
    with open(OUT / f"{scenario}-{target.name}.pyspy", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    summary = OUT / f"{scenario}-{target.name}.summary"
    with open(summary, "w") as handle:
        for grep in [None, *target.grep]:
            args = [sys.executable, "-m", "bench.profile_summary", str(raw), "--top", "12"]
            if grep:
                args += ["--grep", grep]
                handle.write(f"\n=== stacks containing {grep} ===\n")
            handle.flush()
            subprocess.run(args, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    print(f"{target.name}: {summary}")


def main() -> int:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "push"
    OUT.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ, BENCH_QUICK="1", BENCH_ONLY=scenario, BENCH_PROFILE_TAG=tag,
               BENCH_RESULTS=str(OUT / f"{scenario}.json"))
    with open(OUT / f"{scenario}.log", "w") as log:
        run = subprocess.Popen([sys.executable, "-m", "bench.run"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
        threads = [threading.Thread(target=_attach, args=(t, scenario, tag, run)) for t in TARGETS[scenario]]
        for thread in threads:
            thread.start()
        code = run.wait()
        for thread in threads:
            thread.join(60)
    print(f"bench.run exited {code}; log {OUT / f'{scenario}.log'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
