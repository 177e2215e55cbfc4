"""Maintenance removes killed stages' leftovers and the folders of deleted jobs, and nothing else."""
from __future__ import annotations

import os
import time
import uuid

import pytest

from jobs.media_sweep import media_sweep
from tests.factories import make_job, make_processing_job

pytestmark = pytest.mark.django_db

HOUR = 3600


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.JOBS = {**settings.JOBS, "MEDIA_SWEEP_GRACE_S": 600.0}
    return settings.MEDIA_ROOT


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (then, then))


def _job_folder(media, job):
    folder = media / "jobs" / str(job.pk)
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "scene-001.png").write_bytes(b"png")
    return folder


def test_media_sweep__old_leftovers_of_a_stopped_job_go_and_its_artifacts_stay(media):
    # given a queued job's folder holding an artifact, an old .partial, an old work folder and a fresh .partial
    folder = _job_folder(media, make_job())
    old_partial = folder / "images" / ".scene-002.ab12cd34.partial"
    old_partial.write_bytes(b"half")
    work = folder / ".video-work-x1y2"
    (work / "frames").mkdir(parents=True)
    (work / "frames" / "f1.raw").write_bytes(b"frame")
    fresh = folder / ".video.cd34ef56.partial"
    fresh.write_bytes(b"being written")
    _age(old_partial, HOUR)
    _age(work, HOUR)
    # when maintenance sweeps
    report = media_sweep()
    # then the old leftovers are gone; the artifact and the leftover still being written stay
    assert not old_partial.exists() and not work.exists()
    assert (folder / "images" / "scene-001.png").exists() and fresh.exists()
    assert report.as_dict() == {"orphan_folders": 0, "leftovers": 2, "scratch": 0}


def test_media_sweep__a_running_stage_keeps_its_files_until_its_time_limit_passed(media, settings):
    # given a processing job (hard limit 1 h) with a .partial untouched for 20 minutes
    job = make_processing_job()
    folder = _job_folder(media, job)
    partial = folder / ".video.ab12cd34.partial"
    partial.write_bytes(b"slow encoder")
    _age(partial, 20 * 60)
    # when maintenance sweeps, the stage may still be writing it
    media_sweep()
    assert partial.exists()
    # once older than the hard limit plus the grace period no stage can own it any more
    _age(partial, HOUR + 601)
    media_sweep()
    assert not partial.exists()


def test_media_sweep__the_folder_of_a_deleted_job_goes_and_foreign_folders_stay(media):
    # given a folder of a job that no longer exists (its project was deleted while a stage ran) and a non-job folder
    orphan = media / "jobs" / str(uuid.uuid4())
    (orphan / "images").mkdir(parents=True)
    (orphan / "images" / ".scene-001.ab12cd34.partial").write_bytes(b"x")
    foreign = media / "jobs" / "lost+found"
    foreign.mkdir()
    # when maintenance sweeps
    report = media_sweep()
    # then the orphan is removed at once, the other folder stays
    assert not orphan.exists() and foreign.exists()
    assert report.orphan_folders == [orphan.name]


def test_media_sweep__no_media_folder_yet_is_fine(media):
    assert media_sweep().as_dict() == {"orphan_folders": 0, "leftovers": 0, "scratch": 0}


def test_media_sweep__killed_stages_scratch_folders_go_unless_their_job_may_still_run(media):
    # given scratch folders a killed stage left: of a finished job (old and fresh), and of a processing job
    finished, running = make_job(), make_processing_job()
    scratch = media / "scratch"
    old, fresh, busy = (scratch / f"{finished.pk}-a1-images-x1", scratch / f"{finished.pk}-a1-audio-x2",
                        scratch / f"{running.pk}-a1-video-x3")
    for folder in (old, fresh, busy):
        (folder / "inputs").mkdir(parents=True)
        (folder / "inputs" / "scene_001.png").write_bytes(b"png")
    _age(old, 2 * HOUR)
    _age(busy, 700)  # past the grace, but within the processing job's stage time limit plus the grace

    report = media_sweep()

    assert report.scratch == [old.name]
    assert not old.exists() and fresh.exists() and busy.exists()


def test_stage_scratch__is_removed_however_the_stage_ends_and_sweeps_stale_ones(media, settings):
    from jobs.scratch import stage_scratch

    stale = media / "scratch" / "gone-a1-images-x"
    stale.mkdir(parents=True)
    _age(stale, settings.JOBS.get("JOB_TIME_LIMIT_S", 3600) + 3 * HOUR)
    with pytest.raises(RuntimeError):
        with stage_scratch("job", 1, "images") as folder:
            (folder / "work.bin").write_bytes(b"x")
            raise RuntimeError("the stage failed")
    assert not folder.exists() and not stale.exists()
