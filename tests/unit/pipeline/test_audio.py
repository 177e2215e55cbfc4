"""Stage 3: narration WAVs of exact scene length."""
from __future__ import annotations

import shutil
import wave
from array import array
from pathlib import Path

import pytest

from jobs.pipeline import JobCancelled, PermanentError, PipelineConfig, Scene, run_audio_stage
from jobs.pipeline import audio as audio_module
from tests.doubles import RecordingContext
from tests.unit.pipeline.conftest import local_files, stored

HAS_ESPEAK = shutil.which("espeak-ng") is not None


def _scenes() -> list[Scene]:
    return [
        Scene(1, None, "The quick brown fox jumps over the lazy dog.", 3.6),
        Scene(2, "INT. HALL", "Short.", 2.0),
        Scene(3, None, "A third scene with a handful of words.", 2.8),
    ]


def _wav(path: Path) -> tuple[float, array, wave._wave_params]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        samples = array("h", wav.readframes(params.nframes))
    return params.nframes / params.framerate, samples, params


def test_run_audio_stage__tone_fallback_has_exact_durations(tmp_path: Path, config: PipelineConfig) -> None:
    ctx = RecordingContext()
    artifacts = run_audio_stage(_scenes(), local_files(tmp_path), ctx, params={}, config=config, engine="tone")
    for artifact, scene in zip(artifacts, _scenes()):
        duration, samples, params = _wav(stored(tmp_path, artifact))
        assert abs(duration - scene.duration_s) < 0.05
        assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 22050)
        assert artifact.meta["voice"] == "tone"
        assert artifact.meta["duration_s"] == pytest.approx(scene.duration_s, abs=1e-4)
        assert max(map(abs, samples)) > 1000  # audible, but soft
        assert max(map(abs, samples)) < 0.3 * 32767
    assert [stage for _, stage in ctx.reports] == [f"Generating narration ({i}/3)" for i in range(4)]


def test_run_audio_stage__falls_back_to_tone_without_espeak(tmp_path: Path, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_module.shutil, "which", lambda name: None)
    artifacts = run_audio_stage(_scenes()[:1], local_files(tmp_path), RecordingContext(), params={}, config=config)
    assert artifacts[0].meta["voice"] == "tone"
    assert abs(_wav(stored(tmp_path, artifacts[0]))[0] - 3.6) < 0.05


def test_run_audio_stage__forcing_missing_espeak_fails_clearly(tmp_path: Path, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_module.shutil, "which", lambda name: None)
    with pytest.raises(PermanentError, match="espeak-ng is not installed"):
        run_audio_stage(_scenes(), local_files(tmp_path), RecordingContext(), params={}, config=config, engine="espeak-ng")


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_run_audio_stage__espeak_matches_scene_durations(tmp_path: Path, config: PipelineConfig) -> None:
    artifacts = run_audio_stage(_scenes(), local_files(tmp_path), RecordingContext(), params={"voice": "en-gb", "rate_wpm": 150}, config=config)
    for artifact, scene in zip(artifacts, _scenes()):
        duration, samples, params = _wav(stored(tmp_path, artifact))
        assert abs(duration - scene.duration_s) < 0.05
        assert (params.nchannels, params.sampwidth) == (1, 2)
        assert artifact.meta["voice"] == "espeak-ng"
        assert max(map(abs, samples)) > 2000  # there is speech in it
    assert not [p for p in (tmp_path / "audio").iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_run_audio_stage__espeak_speeds_up_dense_scenes_to_fit(tmp_path: Path, config: PipelineConfig) -> None:
    dense = Scene(1, None, "This is a rather long sentence that cannot possibly be spoken in two seconds at a normal speed.", 2.0)
    artifacts = run_audio_stage([dense], local_files(tmp_path), RecordingContext(), params={"rate_wpm": 150}, config=config)
    duration, samples, _ = _wav(stored(tmp_path, artifacts[0]))
    assert abs(duration - 2.0) < 0.05
    assert max(map(abs, samples[-2000:])) < 32767  # faded, not clipped


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_run_audio_stage__text_starting_with_dash_is_spoken_not_parsed(tmp_path: Path, config: PipelineConfig) -> None:
    scene = Scene(1, None, "--version -w /tmp/evil.wav", 2.0)
    artifacts = run_audio_stage([scene], local_files(tmp_path), RecordingContext(), params={}, config=config)
    assert max(map(abs, _wav(stored(tmp_path, artifacts[0]))[1])) > 2000
    assert not Path("/tmp/evil.wav").exists()


def test_fit_to_length__pads_and_trims_exactly() -> None:
    speech = array("h", [1000] * 100)
    assert len(audio_module.fit_to_length(speech, 250, 22050)) == 250
    trimmed = audio_module.fit_to_length(array("h", [1000] * 5000), 3000, 22050)
    assert len(trimmed) == 3000
    assert abs(trimmed[-1]) < 1000  # faded out


def test_run_audio_stage__cancel_between_scenes(tmp_path: Path, config: PipelineConfig) -> None:
    with pytest.raises(JobCancelled):
        run_audio_stage(_scenes(), local_files(tmp_path), RecordingContext(cancel_after_checks=1), params={}, config=config, engine="tone")
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == ["scene_001.wav"]
