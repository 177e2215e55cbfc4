"""Stage 4: assembling the MP4 (real ffmpeg encodes, so these are marked slow)."""
from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageStat

from jobs.pipeline import (
    JobCancelled,
    PermanentError,
    PipelineConfig,
    probe_duration,
    probe_streams,
    run_audio_stage,
    run_image_stage,
    run_parse_stage,
    run_video_stage,
)
from jobs.pipeline.media import ffmpeg_exe
from tests.doubles import NullContext, RecordingContext
from tests.unit.pipeline.conftest import local_files, stored

pytestmark = pytest.mark.slow

SMALL = {"width": 320, "height": 180, "fps": 10, "voice": "en", "rate_wpm": 150}
SCRIPT = "# Dawn\nThe sun rises over the quiet harbour.\n# Noon\nBoats come in.\n# Dusk\nLights flicker on along the shore, one by one."


def _prepare(out_dir: Path, config: PipelineConfig, script: str = SCRIPT, params: dict | None = None, engine: str | None = None):
    params = params or SMALL
    scenes, _ = run_parse_stage(script, local_files(out_dir), NullContext(), params=params, config=config)
    images = run_image_stage(scenes, local_files(out_dir), NullContext(), params=params, config=config)
    audios = run_audio_stage(scenes, local_files(out_dir), NullContext(), params=params, config=config, engine=engine)
    return scenes, images, audios


def _frame_at(video: Path, seconds: float, target: Path) -> Image.Image:
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-ss", f"{seconds:.3f}", "-i", str(video), "-frames:v", "1", str(target)],
        check=True,
        timeout=60,
    )
    return Image.open(target).convert("RGB")


def _mean_distance(a: Image.Image, b: Image.Image) -> float:
    return max(abs(x - y) for x, y in zip(ImageStat.Stat(a).mean, ImageStat.Stat(b).mean))


def test_run_video_stage__three_scenes_make_an_mp4_of_the_right_length(tmp_path: Path, config: PipelineConfig) -> None:
    scenes, images, audios = _prepare(tmp_path, config)
    ctx = RecordingContext()
    [artifact] = run_video_stage(scenes, images, audios, local_files(tmp_path), ctx, params=SMALL, config=config)

    assert stored(tmp_path, artifact) == tmp_path / "video.mp4"
    assert artifact.content_type == "video/mp4" and artifact.kind == "video"
    expected = sum(s.duration_s for s in scenes)
    assert abs(probe_duration(stored(tmp_path, artifact)) - expected) < 0.2
    streams = probe_streams(stored(tmp_path, artifact))
    assert (streams["width"], streams["height"]) == (320, 180)
    assert streams["has_video"] and streams["has_audio"]
    assert (streams["video_codec"], streams["audio_codec"], streams["pix_fmt"]) == ("h264", "aac", "yuv420p")
    assert ctx.reports[-1] == (100.0, "Encoding video")
    assert {stage for _, stage in ctx.reports} == {"Encoding video"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "images", "manifests", "scenes.json", "video.mp4"]


def test_run_video_stage__each_image_is_shown_for_its_scene(tmp_path: Path, config: PipelineConfig) -> None:
    scenes, images, audios = _prepare(tmp_path, config)
    [artifact] = run_video_stage(scenes, images, audios, local_files(tmp_path), NullContext(), params=SMALL, config=config)
    start = 0.0
    for scene, image in zip(scenes, images):
        frame = _frame_at(stored(tmp_path, artifact), start + scene.duration_s / 2, tmp_path / f"frame_{scene.index}.png")
        source = Image.open(stored(tmp_path, image)).convert("RGB")
        others = [Image.open(stored(tmp_path, i)).convert("RGB") for i in images if i is not image]
        assert _mean_distance(frame, source) < min(_mean_distance(frame, other) for other in others)
        start += scene.duration_s


def test_run_video_stage__rerun_replaces_the_video(tmp_path: Path, config: PipelineConfig) -> None:
    scenes, images, audios = _prepare(tmp_path, config, engine="tone")
    run_video_stage(scenes, images, audios, local_files(tmp_path), NullContext(), params=SMALL, config=config)
    [again] = run_video_stage(scenes, images, audios, local_files(tmp_path), NullContext(), params={**SMALL, "width": 160, "height": 90}, config=config)
    assert (probe_streams(stored(tmp_path, again))["width"], probe_streams(stored(tmp_path, again))["height"]) == (160, 90)


def test_run_video_stage__ffmpeg_failure_is_permanent_with_detail(tmp_path: Path, config: PipelineConfig) -> None:
    scenes, images, audios = _prepare(tmp_path, config, engine="tone")
    stored(tmp_path, images[1]).write_bytes(b"this is not a png")
    with pytest.raises(PermanentError) as info:
        run_video_stage(scenes, images, audios, local_files(tmp_path), NullContext(), params=SMALL, config=config)
    assert info.value.message == "video encoding failed"
    assert "PNG" in info.value.detail or "Invalid" in info.value.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "images", "manifests", "scenes.json"]


def test_run_video_stage__missing_input_is_permanent(tmp_path: Path, config: PipelineConfig) -> None:
    scenes, images, audios = _prepare(tmp_path, config, engine="tone")
    with pytest.raises(PermanentError, match="image for scene 3 is missing"):
        run_video_stage(scenes, images[:2], audios, local_files(tmp_path), NullContext(), params=SMALL, config=config)


class _CancelDuringEncode(RecordingContext):
    """Cancels `delay_s` after the encoder first reports progress; remembers when."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.cancelled_at: float | None = None
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        self.cancelled_at = time.monotonic()
        self.cancel()

    def report(self, progress: float, stage: str) -> None:
        super().report(progress, stage)
        if stage == "Encoding video" and self._timer is None:
            self._timer = threading.Timer(self.delay_s, self._fire)
            self._timer.start()


def test_run_video_stage__cancel_mid_encode_stops_ffmpeg_and_leaves_no_video(tmp_path: Path) -> None:
    # Three one-minute scenes: several seconds of encoding, so a cancel after 1 s lands mid-encode.
    config = PipelineConfig(min_scene_seconds=60.0)
    params = {**SMALL, "width": 640, "height": 360, "fps": 30}
    scenes, images, audios = _prepare(tmp_path, config, script="One.\n\nTwo.\n\nThree.", params=params, engine="tone")
    ctx = _CancelDuringEncode(delay_s=1.0)

    with pytest.raises(JobCancelled):
        run_video_stage(scenes, images, audios, local_files(tmp_path), ctx, params=params, config=config)
    stopped_at = time.monotonic()

    assert ctx.cancelled_at is not None
    assert stopped_at - ctx.cancelled_at < 1.5
    assert max(progress for progress, _ in ctx.reports) < 100.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "images", "manifests", "scenes.json"]
    assert not (tmp_path / "manifests" / "video.json").exists()
    assert not [c for c in psutil.Process().children(recursive=True) if "ffmpeg" in c.name()]


def test_run_video_stage__output_over_the_scratch_limit_fails_and_leaves_no_file(tmp_path: Path, config: PipelineConfig) -> None:
    # Given three scenes whose inputs are on disk, and a job scratch limit 2 KB above what they use
    scenes, images, audios = _prepare(tmp_path, config)
    used = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    tight = dataclasses.replace(config, max_job_bytes=used + sum(stored(tmp_path, a).stat().st_size for a in audios) + 2_000)

    # When the video is encoded, Then it stops at the limit with a message naming it, and leaves no video
    with pytest.raises(PermanentError, match="JOB_MAX_SCRATCH_BYTES"):
        run_video_stage(scenes, images, audios, local_files(tmp_path), RecordingContext(), params=SMALL, config=tight)
    assert not (tmp_path / "video.mp4").exists()
    assert not [p for p in tmp_path.rglob("*.partial")]
