"""Maintenance: remove what killed stages and deleted jobs left under MEDIA_ROOT/jobs/ and MEDIA_ROOT/scratch/.

A stage killed mid-write (SIGKILL, hard time limit, lost machine) never runs its clean-up, so its hidden
`.*.partial` files and `.video-work-*` folders stay; a stage still running when its project was deleted
writes into a folder whose job no longer exists. Neither is ever served (the artifact view refuses hidden
names), but both fill the disk. Likewise a killed stage's scratch folder (MEDIA_ROOT/scratch/<job id>-…,
jobs/scratch.py): this sweep sees the maintenance worker's own disk; on other machines each stage sweeps
its machine's stale scratch folders as it starts (jobs/scratch.py).
"""
from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import states
from .conf import job_settings
from .locations import jobs_media_root, scratch_root
from .models import GenerationJob

logger = logging.getLogger(__name__)

LEFTOVER_PATTERNS = (".*.partial", ".video-work-*")


@dataclass
class SweepReport:
    orphan_folders: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"orphan_folders": len(self.orphan_folders), "leftovers": len(self.leftovers),
                "scratch": len(self.scratch)}


def _newest_mtime(path: Path) -> float:
    """The latest modification time of `path` or anything inside it (a file being written keeps it fresh)."""
    try:
        newest = path.stat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for child in path.rglob("*"):
                newest = max(newest, child.lstat().st_mtime)
    except FileNotFoundError:
        return time.time()  # vanished meanwhile: someone is working on it, leave it to the next sweep
    return newest


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _job_ids(root: Path) -> dict[str, Path]:
    folders = {}
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            folders[str(uuid.UUID(folder.name))] = folder
        except ValueError:
            continue  # not ours
    return folders


def media_sweep(*, grace_s: float | None = None) -> SweepReport:
    """Remove folders of jobs that no longer exist, and stage leftovers no running stage can still own.

    A leftover of a job that is not processing is removed once untouched for `grace_s` (the setting
    MEDIA_SWEEP_GRACE_S by default); of a processing job, only once older than its hard time limit too.
    """
    conf = job_settings()
    grace = conf.MEDIA_SWEEP_GRACE_S if grace_s is None else grace_s
    report = SweepReport()
    folders = _job_ids(jobs_media_root())
    known = {str(pk): (status, job_type) for pk, status, job_type in
             GenerationJob.objects.filter(pk__in=list(folders)).values_list("pk", "status", "job_type")}
    now = time.time()
    for job_id, folder in folders.items():
        if job_id not in known:
            # Its job (and project) were deleted: a stage still writing here stops at its next check.
            _remove(folder)
            report.orphan_folders.append(job_id)
            continue
        status, job_type = known[job_id]
        age = grace + (conf.time_limits(job_type)[1] if status == states.PROCESSING else 0)
        for pattern in LEFTOVER_PATTERNS:
            for leftover in folder.rglob(pattern):
                if now - _newest_mtime(leftover) >= age:
                    _remove(leftover)
                    report.leftovers.append(str(leftover.relative_to(folder.parent)))
    sweep_scratch(report, grace, now)
    if report.orphan_folders or report.leftovers or report.scratch:
        logger.info("media sweep: removed %d orphan job folders, %d stage leftovers and %d scratch folders",
                    len(report.orphan_folders), len(report.leftovers), len(report.scratch))
    return report


def sweep_scratch(report: SweepReport, grace: float, now: float) -> None:
    """Remove scratch folders no stage can still be using: untouched for `grace`, past the hard time limit
    too while their job is still processing (their names start with the job's id)."""
    root = scratch_root()
    folders = [folder for folder in root.iterdir()] if root.is_dir() else []
    ids = {folder: folder.name[:36] for folder in folders}
    statuses = dict(GenerationJob.objects.filter(pk__in=[i for i in set(ids.values()) if _is_uuid(i)])
                    .values_list("pk", "status"))
    statuses = {str(pk): status for pk, status in statuses.items()}
    conf = job_settings()
    longest = max((conf.time_limits(job_type)[1] for job_type in _job_types()), default=0)
    for folder, job_id in ids.items():
        age = grace + (longest if statuses.get(job_id) == states.PROCESSING else 0)
        if now - _newest_mtime(folder) >= age:
            _remove(folder)
            report.scratch.append(folder.name)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _job_types() -> tuple[str, ...]:
    from .plans import JOB_TYPES

    return JOB_TYPES
