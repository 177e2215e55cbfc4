"""Stage 1: splitting scripts into timed scenes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.pipeline import PipelineConfig, ValidationError, load_scenes, parse_script, run_parse_stage, validate_script
from jobs.pipeline.script import heading_of
from tests.doubles import NullContext
from tests.unit.pipeline.conftest import local_files, stored


def test_parse_script__screenplay_sluglines_start_scenes(config: PipelineConfig) -> None:
    script = "INT. KITCHEN - DAY\nAnna pours coffee.\n\nEXT. GARDEN - NIGHT\nOwls call.\nINT./EXT. CAR - DAWN\nThey drive."
    scenes = parse_script(script, config=config)
    assert [s.heading for s in scenes] == ["INT. KITCHEN - DAY", "EXT. GARDEN - NIGHT", "INT./EXT. CAR - DAWN"]
    assert [s.text for s in scenes] == ["Anna pours coffee.", "Owls call.", "They drive."]
    assert [s.index for s in scenes] == [1, 2, 3]


def test_parse_script__markdown_headings_of_any_level(config: PipelineConfig) -> None:
    script = "# Opening #\nThe sun rises.\n\n### The market\nStalls open.\n\n###### Tiny\nEnd."
    scenes = parse_script(script, config=config)
    assert [s.heading for s in scenes] == ["Opening", "The market", "Tiny"]
    assert scenes[1].text == "Stalls open."


def test_parse_script__scene_n_headings(config: PipelineConfig) -> None:
    script = "Scene 1\nFirst words.\nSCENE 2: The storm\nRain falls.\nScene IV - Night\nStars."
    scenes = parse_script(script, config=config)
    assert [s.heading for s in scenes] == ["Scene 1", "SCENE 2: The storm", "Scene IV - Night"]
    assert [s.text for s in scenes] == ["First words.", "Rain falls.", "Stars."]


def test_heading_of__prose_is_not_a_heading() -> None:
    assert heading_of("Scene 3 opens with a long shot.") is None
    assert heading_of("#hashtag in narration") is None
    assert heading_of("Interior design matters.") is None
    assert heading_of("  ## Indented  ") == "Indented"


def test_parse_script__paragraphs_without_headings(config: PipelineConfig) -> None:
    script = "First paragraph\ncontinues here.\n\n\n  \nSecond paragraph.\r\n\r\nThird."
    scenes = parse_script(script, config=config)
    assert [s.text for s in scenes] == ["First paragraph continues here.", "Second paragraph.", "Third."]
    assert all(s.heading is None for s in scenes)


def test_parse_script__text_before_first_heading_is_its_own_scene(config: PipelineConfig) -> None:
    scenes = parse_script("A cold open.\n# One\nBody.", config=config)
    assert [(s.heading, s.text) for s in scenes] == [(None, "A cold open."), ("One", "Body.")]


def test_parse_script__heading_without_text_is_narrated(config: PipelineConfig) -> None:
    scenes = parse_script("# Silence\n# Then noise\nLoud.", config=config)
    assert scenes[0].text == "Silence"


def test_parse_script__unicode_is_kept(config: PipelineConfig) -> None:
    script = "\ufeff# Café 漢字 🎬\nÜber straße — naïve façade.\n\n# Ελληνικά\nΚαλημέρα κόσμε."
    scenes = parse_script(script, config=config)
    assert scenes[0].heading == "Café 漢字 🎬"
    assert scenes[0].text == "Über straße — naïve façade."
    assert scenes[1].text == "Καλημέρα κόσμε."


def test_parse_script__control_characters_are_dropped(config: PipelineConfig) -> None:
    assert parse_script("Bell\x07 and null\x00 here.", config=config)[0].text == "Bell and null here."


def test_parse_script__very_long_line(config: PipelineConfig) -> None:
    line = "word " * 15_000
    scenes = parse_script(line, config=config)
    assert len(scenes) == 1
    assert scenes[0].duration_s == pytest.approx(15_000 / 150 * 60)


@pytest.mark.parametrize("script", ["", "   \n\t\n  "])
def test_parse_script__empty_script_is_rejected(script: str, config: PipelineConfig) -> None:
    with pytest.raises(ValidationError) as info:
        parse_script(script, config=config)
    assert (info.value.field, info.value.message) == ("script", "is empty")


def test_parse_script__non_string_is_rejected(config: PipelineConfig) -> None:
    with pytest.raises(ValidationError, match="script: must be a string"):
        parse_script(None, config=config)  # type: ignore[arg-type]


def test_parse_script__too_long_script_is_rejected() -> None:
    with pytest.raises(ValidationError, match="script: is 11 characters long; the maximum is 10"):
        parse_script("x" * 11, config=PipelineConfig(max_script_chars=10))


def test_parse_script__scene_limit(config: PipelineConfig) -> None:
    script = "\n\n".join(f"Paragraph {i}." for i in range(5))
    assert len(parse_script(script, config=config, max_scenes=5)) == 5
    with pytest.raises(ValidationError) as info:
        parse_script(script, config=config, max_scenes=4)
    assert str(info.value) == "script: has 5 scenes; the maximum is 4"


def test_parse_script__deployment_limit_wins_over_job_limit() -> None:
    with pytest.raises(ValidationError, match="the maximum is 2"):
        parse_script("a\n\nb\n\nc", config=PipelineConfig(max_scenes=2), max_scenes=50)


def test_parse_script__durations_follow_words_per_minute() -> None:
    config = PipelineConfig(words_per_minute=150, min_scene_seconds=2.0)
    scenes = parse_script(" ".join(["w"] * 10) + "\n\nshort\n\n" + " ".join(["w"] * 7), config=config)
    # 10 words at 150 wpm = 4 s; one word is below the 2 s floor; 7 words = 2.8 s.
    assert [s.duration_s for s in scenes] == [4.0, 2.0, 2.8]


def test_parse_script__durations_are_rounded_to_milliseconds() -> None:
    scenes = parse_script("one two three four five six seven", config=PipelineConfig(min_scene_seconds=0.1), words_per_minute=140)
    assert scenes[0].duration_s == 3.0
    scenes = parse_script("a b c d e", config=PipelineConfig(min_scene_seconds=0.1), words_per_minute=180)
    assert scenes[0].duration_s == round(5 / 180 * 60, 3)


def test_validate_script__returns_scenes_for_preflight(config: PipelineConfig) -> None:
    assert len(validate_script("a\n\nb", config)) == 2
    with pytest.raises(ValidationError):
        validate_script("", config)


def test_run_parse_stage__writes_scenes_json_atomically(tmp_path: Path, config: PipelineConfig) -> None:
    scenes, artifacts = run_parse_stage("# A\nOne two.\n# B\nThree.", local_files(tmp_path), NullContext(), params={"rate_wpm": 150}, config=config)
    assert [a.kind for a in artifacts] == ["scenes"]
    data = json.loads((tmp_path / "scenes.json").read_text())
    assert [s["heading"] for s in data["scenes"]] == ["A", "B"]
    assert load_scenes(local_files(tmp_path)) == scenes
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def test_run_parse_stage__rerun_overwrites(tmp_path: Path, config: PipelineConfig) -> None:
    run_parse_stage("a\n\nb\n\nc", local_files(tmp_path), NullContext(), params={}, config=config)
    run_parse_stage("only one", local_files(tmp_path), NullContext(), params={}, config=config)
    assert [s.text for s in load_scenes(local_files(tmp_path))] == ["only one"]
