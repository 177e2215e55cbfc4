"""Job parameter validation."""
from __future__ import annotations

import pytest

from jobs.pipeline import ValidationError
from jobs.plans import JOB_TYPES, PARAMS_SCHEMA, default_params, validate_params


def test_validate_params__defaults_per_job_type() -> None:
    assert validate_params("image_generation", None) == {"width": 1280, "height": 720, "max_scenes": 50}
    assert validate_params("audio_generation", {}) == {"voice": "en", "rate_wpm": 150, "max_scenes": 50}
    assert validate_params("full_video", {}) == {
        "width": 1280, "height": 720, "voice": "en", "rate_wpm": 150, "fps": 24, "max_scenes": 50,
    }  # fmt: skip


def test_validate_params__given_values_are_kept() -> None:
    params = validate_params("full_video", {"width": 320, "height": 180, "voice": "de", "fps": 60, "rate_wpm": 300})
    assert params["width"] == 320 and params["voice"] == "de" and params["fps"] == 60 and params["rate_wpm"] == 300


def test_validate_params__unknown_key() -> None:
    with pytest.raises(ValidationError) as info:
        validate_params("image_generation", {"voice": "en"})
    assert info.value.field == "voice"
    assert info.value.message == "unknown parameter; allowed: width, height, max_scenes"


@pytest.mark.parametrize("value", ["1280", 1280.0, None, [1280]])
def test_validate_params__wrong_type(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_params("image_generation", {"width": value})
    assert str(info.value) == "width: must be an integer between 64 and 1920"


@pytest.mark.parametrize("value", [True, False])
def test_validate_params__bool_is_not_an_integer(value: bool) -> None:
    with pytest.raises(ValidationError, match="fps: must be an integer"):
        validate_params("full_video", {"fps": value})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("width", 62, "width: must be between 64 and 1920, got 62"),
        ("width", 1922, "width: must be between 64 and 1920, got 1922"),
        ("height", 1082, "height: must be between 64 and 1080, got 1082"),
        ("fps", 0, "fps: must be between 1 and 60, got 0"),
        ("rate_wpm", 301, "rate_wpm: must be between 80 and 300, got 301"),
        ("max_scenes", 201, "max_scenes: must be between 1 and 200, got 201"),
    ],
)
def test_validate_params__bounds(key: str, value: int, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_params("full_video", {key: value})
    assert str(info.value) == message


def test_validate_params__bounds_are_inclusive() -> None:
    assert validate_params("full_video", {"width": 64, "height": 1080, "fps": 1, "max_scenes": 200})["height"] == 1080


@pytest.mark.parametrize("key", ["width", "height"])
def test_validate_params__odd_sizes_are_rejected(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_params("full_video", {key: 321})
    assert info.value.field == key
    assert "even" in info.value.message


def test_validate_params__voice_must_be_allowed() -> None:
    with pytest.raises(ValidationError, match="voice: must be one of: en, en-us, en-gb, de, fr, es"):
        validate_params("audio_generation", {"voice": "klingon"})


def test_validate_params__unknown_job_type() -> None:
    with pytest.raises(ValidationError) as info:
        validate_params("podcast", {})
    assert info.value.field == "job_type"
    assert all(job_type in info.value.message for job_type in JOB_TYPES)


@pytest.mark.parametrize("params", [[], "width=10", 42])
def test_validate_params__params_must_be_a_dict(params: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_params("full_video", params)  # type: ignore[arg-type]
    assert info.value.field == "params"


def test_params_schema__describes_every_job_type() -> None:
    assert set(PARAMS_SCHEMA) == set(JOB_TYPES)
    width = PARAMS_SCHEMA["full_video"]["properties"]["width"]
    assert width == {**width, "type": "integer", "minimum": 64, "maximum": 1920, "default": 1280, "multipleOf": 2}
    assert PARAMS_SCHEMA["audio_generation"]["additionalProperties"] is False
    for job_type in JOB_TYPES:
        defaults = {k: v["default"] for k, v in PARAMS_SCHEMA[job_type]["properties"].items()}
        assert defaults == default_params(job_type)


def test_params_schema__is_valid_json_schema_that_agrees_with_validation() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = PARAMS_SCHEMA["full_video"]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(default_params("full_video"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"width": 321}, schema)
