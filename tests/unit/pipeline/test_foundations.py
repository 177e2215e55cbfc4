"""Errors, contexts, artifacts, config and media probing."""
from __future__ import annotations

import pickle
import threading
import wave
from pathlib import Path

import pytest

from jobs.pipeline import (
    Artifact,
    JobCancelled,
    PermanentError,
    PipelineConfig,
    PipelineError,
    ScaledContext,
    StageContext,
    TransientError,
    ValidationError,
    atomic_path,
    atomic_write_bytes,
    probe_duration,
    probe_streams,
)
from tests.doubles import NullContext, RecordingContext


def test_validation_error__names_field_and_survives_pickling() -> None:
    error = ValidationError("width", "must be even")
    assert str(error) == "width: must be even"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.message, str(copy)) == ("width", "must be even", "width: must be even")


def test_pipeline_errors__hierarchy_and_detail() -> None:
    error = pickle.loads(pickle.dumps(TransientError("backend down", detail="refused")))
    assert isinstance(error, PipelineError) and error.detail == "refused" and str(error) == "backend down"
    assert issubclass(PermanentError, PipelineError) and issubclass(ValidationError, PipelineError)
    assert not issubclass(JobCancelled, PipelineError)


def test_contexts__satisfy_the_protocol() -> None:
    for ctx in (NullContext(), RecordingContext(), ScaledContext(NullContext(), 0, 100)):
        assert isinstance(ctx, StageContext)


def test_recording_context__cancels_after_n_checks() -> None:
    ctx = RecordingContext(cancel_after_checks=2)
    ctx.check_cancelled()
    ctx.check_cancelled()
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()


def test_recording_context__cancels_on_event() -> None:
    event = threading.Event()
    ctx = RecordingContext(cancel_event=event)
    ctx.check_cancelled()
    event.set()
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()


def test_scaled_context__maps_and_clamps_progress() -> None:
    parent = RecordingContext()
    scaled = ScaledContext(parent, 40.0, 60.0)
    for progress in (0, 50, 100, 150, -5):
        scaled.report(progress, "Generating images (1/2)")
    assert parent.reports == [(40.0, "Generating images (1/2)"), (50.0, "Generating images (1/2)"), (60.0, "Generating images (1/2)"), (60.0, "Generating images (1/2)"), (40.0, "Generating images (1/2)")]


def test_scaled_context__nests_and_forwards_cancellation() -> None:
    parent = RecordingContext()
    inner = ScaledContext(ScaledContext(parent, 50, 100), 0, 50)
    inner.report(100, "x")
    assert parent.reports == [(75.0, "x")]
    parent.cancel()
    with pytest.raises(JobCancelled):
        inner.check_cancelled()


def test_scaled_context__rejects_bad_ranges() -> None:
    with pytest.raises(ValueError):
        ScaledContext(NullContext(), 60, 40)


def test_artifact__to_dict_names_its_key() -> None:
    artifact = Artifact("jobs/x/a1/images/scene_001.png", "image", "image/png", 12, {"scene": 1})
    assert artifact.to_dict() == {
        "kind": "image", "key": "jobs/x/a1/images/scene_001.png", "bytes": 12, "content_type": "image/png",
        "meta": {"scene": 1},
    }  # fmt: skip
    assert Artifact.from_dict(artifact.to_dict()) == artifact
    assert artifact.name == "scene_001.png"


def test_atomic_path__failure_keeps_the_old_file_and_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "video.mp4"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]


def test_atomic_path__partial_name_is_not_the_final_name(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "video.mp4") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".") and tmp.name.endswith(".partial") and not tmp.name.endswith(".mp4")
        tmp.write_bytes(b"new")
    assert (tmp_path / "video.mp4").read_bytes() == b"new"


def test_config__defaults() -> None:
    config = PipelineConfig()
    assert (config.max_script_chars, config.max_scenes, config.words_per_minute, config.min_scene_seconds) == (100_000, 200, 150, 2.0)
    assert config.ollama_url is None and config.sd_api_url is None and config.ollama_model == "llama3.2"


def test_config__from_env() -> None:
    config = PipelineConfig.from_env(
        {
            "OLLAMA_URL": "http://ollama:11434/",
            "OLLAMA_MODEL": "mistral",
            "SD_API_URL": "",
            "PIPELINE_MAX_SCRIPT_CHARS": "5000",
            "PIPELINE_MAX_SCENES": "20",
            "PIPELINE_BACKEND_TIMEOUT": "2.5",
        }
    )
    assert config.ollama_url == "http://ollama:11434"
    assert config.ollama_model == "mistral"
    assert config.sd_api_url is None
    assert (config.max_script_chars, config.max_scenes, config.backend_timeout_s) == (5000, 20, 2.5)
    assert PipelineConfig.from_env({}) == PipelineConfig()


@pytest.mark.parametrize(("name", "value"), [("PIPELINE_MAX_SCENES", "lots"), ("PIPELINE_MAX_SCENES", "0"), ("PIPELINE_BACKEND_TIMEOUT", "-1")])
def test_config__from_env_rejects_bad_numbers(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        PipelineConfig.from_env({name: value})


def test_probe__wav_duration_and_streams(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(2 * 12000))
    assert probe_duration(path) == pytest.approx(1.5, abs=0.02)
    assert probe_streams(path) == {**probe_streams(path), "has_audio": True, "has_video": False, "width": None}


def test_probe__unreadable_file_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"nope")
    with pytest.raises(PermanentError, match="could not read media file"):
        probe_streams(path)
