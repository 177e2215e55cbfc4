"""Ollama and Stable Diffusion adapters against a real local HTTP server."""
from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from jobs.pipeline import PermanentError, PipelineConfig, Scene, TransientError, load_scenes, run_image_stage, run_parse_stage
from jobs.pipeline.backends import ollama, stable_diffusion
from jobs.pipeline.images import image_inputs
from jobs.pipeline.scenework import fingerprint
from tests.doubles import NullContext
from tests.unit.pipeline.conftest import local_files, stored

from .conftest import FakeBackend

GENERATE = "/api/generate"
TXT2IMG = "/sdapi/v1/txt2img"


def _ollama_answer(scenes: object) -> dict[str, object]:
    return {"model": "llama3.2", "response": json.dumps(scenes), "done": True}


def _png_b64(size: tuple[int, int] = (64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# --- Ollama -------------------------------------------------------------------------------------------


def test_ollama_split_scenes__success(fake_backend: FakeBackend) -> None:
    fake_backend.answer(GENERATE, json_body=_ollama_answer({"scenes": [{"heading": "Dawn", "text": "The sun  rises."}, {"text": "Night."}]}))
    config = PipelineConfig(ollama_url=fake_backend.url, ollama_model="tiny")
    assert ollama.split_scenes("The sun rises. Night.", config=config) == [("Dawn", "The sun rises."), (None, "Night.")]
    path, payload = fake_backend.requests[0]
    assert path == GENERATE
    assert payload["model"] == "tiny" and payload["stream"] is False and payload["format"] == "json"
    assert "The sun rises. Night." in payload["prompt"]


def test_ollama_split_scenes__accepts_a_bare_list(fake_backend: FakeBackend) -> None:
    fake_backend.answer(GENERATE, json_body=_ollama_answer([{"heading": None, "text": "One."}]))
    assert ollama.split_scenes("One.", config=PipelineConfig(ollama_url=fake_backend.url)) == [(None, "One.")]


def test_run_parse_stage__uses_ollama_when_configured(fake_backend: FakeBackend, tmp_path: Path) -> None:
    fake_backend.answer(GENERATE, json_body=_ollama_answer({"scenes": [{"heading": "A", "text": "one two three"}]}))
    config = PipelineConfig(ollama_url=fake_backend.url, min_scene_seconds=1.0)
    scenes, artifacts = run_parse_stage("whatever", local_files(tmp_path), NullContext(), params={}, config=config)
    assert scenes == [Scene(1, "A", "one two three", 1.2)] == load_scenes(local_files(tmp_path))
    assert artifacts[0].meta["source"] == "ollama"


def test_ollama_split_scenes__timeout_is_transient(fake_backend: FakeBackend) -> None:
    fake_backend.answer(GENERATE, json_body=_ollama_answer([{"text": "late"}]), delay_s=1.5)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        ollama.split_scenes("x", config=PipelineConfig(ollama_url=fake_backend.url, backend_timeout_s=0.3))
    assert time.monotonic() - started < 1.2


def test_ollama_split_scenes__http_500_is_transient(fake_backend: FakeBackend) -> None:
    fake_backend.answer(GENERATE, status=500, json_body={"error": "model crashed"})
    with pytest.raises(TransientError, match="HTTP 500") as info:
        ollama.split_scenes("x", config=PipelineConfig(ollama_url=fake_backend.url))
    assert "model crashed" in info.value.detail


def test_ollama_split_scenes__refused_is_transient(closed_port_url: str) -> None:
    with pytest.raises(TransientError, match="unreachable"):
        ollama.split_scenes("x", config=PipelineConfig(ollama_url=closed_port_url, backend_timeout_s=2))


def test_ollama_split_scenes__http_404_is_permanent(fake_backend: FakeBackend) -> None:
    fake_backend.answer(GENERATE, status=404, json_body={"error": "model 'x' not found"})
    with pytest.raises(PermanentError, match="HTTP 404"):
        ollama.split_scenes("x", config=PipelineConfig(ollama_url=fake_backend.url))


def test_ollama_split_scenes__malformed_json_body_is_permanent(fake_backend: FakeBackend) -> None:
    fake_backend.answer(GENERATE, body=b"<html>oops")
    with pytest.raises(PermanentError, match="malformed answer") as info:
        ollama.split_scenes("x", config=PipelineConfig(ollama_url=fake_backend.url))
    assert not isinstance(info.value, TransientError)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"done": True}, "without a 'response' text"),
        ({"response": "{not json"}, "not valid JSON"),
        ({"response": json.dumps({"scenes": []})}, "no list of scenes"),
        ({"response": json.dumps({"scenes": ["just text"]})}, "scene 1 in the wrong shape"),
        ({"response": json.dumps([{"text": "ok"}, {"heading": "h"}])}, "scene 2 without narration"),
        ({"response": json.dumps([{"text": "ok", "heading": 3}])}, "non-text heading"),
    ],
)
def test_ollama_split_scenes__wrong_shape_is_permanent(fake_backend: FakeBackend, answer: dict[str, object], message: str) -> None:
    fake_backend.answer(GENERATE, json_body=answer)
    with pytest.raises(PermanentError, match=message):
        ollama.split_scenes("x", config=PipelineConfig(ollama_url=fake_backend.url))


# --- Stable Diffusion ---------------------------------------------------------------------------------


def test_sd_txt2img__success_is_fitted_to_the_frame(fake_backend: FakeBackend) -> None:
    fake_backend.answer(TXT2IMG, json_body={"images": [_png_b64((64, 64))], "parameters": {}})
    image = stable_diffusion.txt2img("a red square", width=320, height=180, config=PipelineConfig(sd_api_url=fake_backend.url))
    assert image.size == (320, 180)
    assert image.getpixel((160, 90)) == (200, 30, 30)
    path, payload = fake_backend.requests[0]
    assert path == TXT2IMG
    assert payload == {"prompt": "a red square", "width": 320, "height": 180, "steps": stable_diffusion.STEPS}


def test_sd_txt2img__sd_model_asks_for_that_checkpoint_and_is_part_of_the_fingerprint(fake_backend: FakeBackend) -> None:
    # given a server asked for a named checkpoint
    fake_backend.answer(TXT2IMG, json_body={"images": [_png_b64((64, 64))]})
    config = PipelineConfig(sd_api_url=fake_backend.url, sd_model="sdxl-base-1.0")
    stable_diffusion.txt2img("a red square", width=64, height=64, config=config)
    # then the request selects it, and a scene's image fingerprint changes with it (a retry renders again)
    assert fake_backend.requests[0][1]["override_settings"] == {"sd_model_checkpoint": "sdxl-base-1.0"}
    assert fake_backend.requests[0][1]["override_settings_restore_afterwards"] is False  # no reload per image
    scene = Scene(1, "H", "T", 2.0)
    prints = {fingerprint(image_inputs(scene, total=1, params={}, config=PipelineConfig(sd_api_url=fake_backend.url,
                                                                                          sd_model=model)))
              for model in (None, "sdxl-base-1.0", "sdxl-base-1.1")}
    assert len(prints) == 3


def test_run_image_stage__uses_stable_diffusion_when_configured(fake_backend: FakeBackend, tmp_path: Path) -> None:
    fake_backend.answer(TXT2IMG, json_body={"images": [_png_b64()]})
    config = PipelineConfig(sd_api_url=fake_backend.url)
    artifacts = run_image_stage([Scene(1, "H", "T", 2.0)], local_files(tmp_path), NullContext(), params={"width": 128, "height": 72}, config=config)
    assert artifacts[0].meta["renderer"] == "stable-diffusion"
    assert Image.open(stored(tmp_path, artifacts[0])).size == (128, 72)
    assert fake_backend.requests[0][1]["prompt"] == "H. T"


def test_sd_txt2img__timeout_is_transient(fake_backend: FakeBackend) -> None:
    fake_backend.answer(TXT2IMG, json_body={"images": [_png_b64()]}, delay_s=1.5)
    with pytest.raises(TransientError, match="timed out"):
        stable_diffusion.txt2img("x", width=64, height=64, config=PipelineConfig(sd_api_url=fake_backend.url, backend_timeout_s=0.3))


def test_sd_txt2img__http_500_is_transient(fake_backend: FakeBackend) -> None:
    fake_backend.answer(TXT2IMG, status=503, json_body={"error": "busy"})
    with pytest.raises(TransientError, match="HTTP 503"):
        stable_diffusion.txt2img("x", width=64, height=64, config=PipelineConfig(sd_api_url=fake_backend.url))


def test_sd_txt2img__refused_is_transient(closed_port_url: str) -> None:
    with pytest.raises(TransientError):
        stable_diffusion.txt2img("x", width=64, height=64, config=PipelineConfig(sd_api_url=closed_port_url))


def test_sd_txt2img__malformed_json_is_permanent(fake_backend: FakeBackend) -> None:
    fake_backend.answer(TXT2IMG, body=b'{"images": [')
    with pytest.raises(PermanentError, match="malformed answer"):
        stable_diffusion.txt2img("x", width=64, height=64, config=PipelineConfig(sd_api_url=fake_backend.url))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"images": []}, "no image"),
        ({"error": "x"}, "no image"),
        ({"images": ["%%% not base64"]}, "unreadable image"),
        ({"images": [base64.b64encode(b"not a png").decode()]}, "unreadable image"),
    ],
)
def test_sd_txt2img__wrong_shape_is_permanent(fake_backend: FakeBackend, answer: dict[str, object], message: str) -> None:
    fake_backend.answer(TXT2IMG, json_body=answer)
    with pytest.raises(PermanentError, match=message):
        stable_diffusion.txt2img("x", width=64, height=64, config=PipelineConfig(sd_api_url=fake_backend.url))
