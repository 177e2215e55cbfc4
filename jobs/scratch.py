"""A running stage's own scratch folder on this machine: created for the stage, removed when it ends.

Removed however the stage ends (done, failed, cancelled); only a killed process leaves one behind. Workers
on many machines share no disk, so each stage, as it starts, removes its machine's scratch folders that no
stage can still be using (untouched for longer than any stage may run); jobs/media_sweep.py does the same
on the maintenance worker's machine, sooner for jobs that are no longer processing.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .conf import job_settings
from .locations import scratch_root

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def stage_scratch(job_id: str, attempt: int, stage: str) -> Iterator[Path]:
    """A fresh folder `MEDIA_ROOT/scratch/<job id>-a<attempt>-<stage>-<random>`, removed on exit."""
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    folder = Path(tempfile.mkdtemp(dir=root, prefix=f"{job_id}-a{attempt}-{stage}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale(root: Path) -> list[str]:
    """Remove folders in `root` untouched for longer than the job time limit plus the sweep's grace."""
    conf = job_settings()
    limit = float(conf.JOB_TIME_LIMIT_S) + float(conf.MEDIA_SWEEP_GRACE_S)
    now = time.time()
    removed = []
    for folder in root.iterdir():
        try:
            newest = max([folder.stat().st_mtime, *(p.lstat().st_mtime for p in folder.rglob("*"))])
        except FileNotFoundError:
            continue  # removed meanwhile by its own stage
        if now - newest > limit:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        logger.info("scratch: removed %d stale folders left by killed stages", len(removed))
    return removed
