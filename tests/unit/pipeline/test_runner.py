"""Running whole jobs in-process and single stages from files."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs.pipeline import (
    JobCancelled,
    PermanentError,
    PipelineConfig,
    ValidationError,
    probe_duration,
)
from jobs.plans import STAGE_WEIGHTS, build_result, run_job, run_stage, stage_ranges
from tests.doubles import NullContext, RecordingContext
from tests.unit.pipeline.conftest import local_files, stored

SCRIPT = "# One\nFirst scene words.\n\n# Two\nSecond scene.\n\n# Three\nThe end."


def _assert_monotonic_to_100(ctx: RecordingContext) -> None:
    progress = [p for p, _ in ctx.reports]
    assert progress == sorted(progress)
    assert progress[0] == 0.0 and progress[-1] == 100.0


@pytest.mark.parametrize("job_type", list(STAGE_WEIGHTS))
def test_stage_ranges__cover_0_to_100_without_gaps(job_type: str) -> None:
    ranges = list(stage_ranges(job_type).values())
    assert ranges[0][0] == 0.0 and ranges[-1][1] == 100.0
    assert all(prev[1] == pytest.approx(nxt[0]) for prev, nxt in zip(ranges, ranges[1:]))


def test_stage_ranges__full_video_weights() -> None:
    assert stage_ranges("full_video") == {"parse": (0, 5), "images": (5, 40), "audio": (40, 65), "video": (65, 100)}


def test_run_job__image_generation(tmp_path: Path, config: PipelineConfig) -> None:
    ctx = RecordingContext()
    result = run_job("image_generation", SCRIPT, {"width": 160, "height": 90}, local_files(tmp_path), ctx, config=config)
    assert result["scenes"] == 3
    assert [a["kind"] for a in result["artifacts"]] == ["scenes", "image", "image", "image"]
    assert result["artifacts"][1]["key"] == f"{tmp_path.name}/images/scene_001.png"
    assert result["duration_s"] == pytest.approx(1.2 + 1.0 + 1.0)  # 3 words at 150 wpm, then the 1 s floor
    _assert_monotonic_to_100(ctx)
    assert not (tmp_path / "audio").exists()


def test_run_job__audio_generation(tmp_path: Path, config: PipelineConfig) -> None:
    ctx = RecordingContext()
    result = run_job("audio_generation", SCRIPT, None, local_files(tmp_path), ctx, config=config)
    assert [a["kind"] for a in result["artifacts"]] == ["scenes", "audio", "audio", "audio"]
    assert all(a["content_type"] == "audio/wav" for a in result["artifacts"][1:])
    _assert_monotonic_to_100(ctx)


@pytest.mark.slow
def test_run_job__full_video(tmp_path: Path, config: PipelineConfig) -> None:
    ctx = RecordingContext()
    result = run_job("full_video", SCRIPT, {"width": 320, "height": 180, "fps": 10}, local_files(tmp_path), ctx, config=config)
    video = result["artifacts"][-1]
    assert video["kind"] == "video" and video["key"] == f"{tmp_path.name}/video.mp4"
    assert abs(probe_duration(tmp_path / "video.mp4") - result["duration_s"]) < 0.2
    _assert_monotonic_to_100(ctx)
    assert ctx.stages[0] == "Parsing script" and ctx.stages[-1] == "Encoding video"


def test_run_job__validates_params_first(tmp_path: Path, config: PipelineConfig) -> None:
    with pytest.raises(ValidationError, match="width"):
        run_job("image_generation", SCRIPT, {"width": 7}, local_files(tmp_path), NullContext(), config=config)
    assert not (tmp_path / "scenes.json").exists()


def test_run_job__cancelled_before_start(tmp_path: Path, config: PipelineConfig) -> None:
    ctx = RecordingContext()
    ctx.cancel()
    with pytest.raises(JobCancelled):
        run_job("image_generation", SCRIPT, None, local_files(tmp_path), ctx, config=config)
    assert not (tmp_path / "scenes.json").exists()


def test_run_stage__stages_read_their_inputs_from_disk(tmp_path: Path, config: PipelineConfig) -> None:
    params = {"width": 160, "height": 90, "voice": "en", "rate_wpm": 150, "fps": 10, "max_scenes": 50}
    run_stage("parse", local_files(tmp_path), NullContext(), params=params, config=config, script=SCRIPT)
    # Images and audio only need scenes.json, so separate workers can run them in parallel.
    images = run_stage("images", local_files(tmp_path), NullContext(), params=params, config=config)
    audio = run_stage("audio", local_files(tmp_path), NullContext(), params=params, config=config)
    assert len(images) == len(audio) == 3


def test_run_stage__video_before_audio_is_a_clear_error(tmp_path: Path, config: PipelineConfig) -> None:
    run_stage("parse", local_files(tmp_path), NullContext(), params={}, config=config, script=SCRIPT)
    run_stage("images", local_files(tmp_path), NullContext(), params={}, config=config)
    with pytest.raises(PermanentError, match="no audio artifacts yet"):
        run_stage("video", local_files(tmp_path), NullContext(), params={}, config=config)


def test_run_stage__before_parse_is_a_clear_error(tmp_path: Path, config: PipelineConfig) -> None:
    with pytest.raises(PermanentError, match="parse stage has not completed"):
        run_stage("images", local_files(tmp_path), NullContext(), params={}, config=config)


def test_run_stage__unknown_stage(tmp_path: Path, config: PipelineConfig) -> None:
    run_stage("parse", local_files(tmp_path), NullContext(), params={}, config=config, script=SCRIPT)
    with pytest.raises(ValueError, match="unknown stage"):
        run_stage("upload", local_files(tmp_path), NullContext(), params={}, config=config)


def test_build_result__needs_every_stage(tmp_path: Path, config: PipelineConfig) -> None:
    run_stage("parse", local_files(tmp_path), NullContext(), params={}, config=config, script=SCRIPT)
    with pytest.raises(PermanentError, match="images stage has not completed"):
        build_result("image_generation", local_files(tmp_path))
