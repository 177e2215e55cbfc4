"""The captions writer: cue splitting and timing, WebVTT output, and the two stages on files."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jobs.pipeline import PermanentError, PipelineConfig, Scene, StageInputs, probe_duration
from jobs.pipeline.artifacts import json_bytes
from jobs.pipeline.captions import (
    CUE_CHARS,
    LINE_CHARS,
    Cue,
    build_cues,
    captions_stage,
    scene_cues,
    split_text,
    vtt_timestamp,
    write_vtt,
)
from jobs.plans import run_job
from tests.unit.pipeline.conftest import local_files, stored
from tests.doubles import NullContext
from tests.vtt import parse_vtt

LONG = ("The harbour is quiet before dawn. Fishing boats rock gently against the pier while gulls circle "
        "overhead, waiting for the first catch of the day to come in. Nobody speaks.")


@pytest.mark.parametrize("seconds, text", [
    (0, "00:00:00.000"), (1.5, "00:00:01.500"), (61.25, "00:01:01.250"), (3661.001, "01:01:01.001"),
    (59.9996, "00:01:00.000"),
])
def test_vtt_timestamp__hours_minutes_seconds_millis(seconds: float, text: str) -> None:
    assert vtt_timestamp(seconds) == text


def test_split_text__short_text_is_one_cue() -> None:
    assert split_text("  A quiet   morning.\n") == ["A quiet morning."]


def test_split_text__long_text_becomes_readable_pieces_in_order() -> None:
    pieces = split_text(LONG)

    assert len(pieces) > 1 and all(len(piece) <= CUE_CHARS for piece in pieces)
    assert all(len(textwrap.wrap(piece, LINE_CHARS)) <= 2 for piece in pieces)  # two lines at most
    assert " ".join(pieces) == " ".join(LONG.split())
    assert pieces[0] == "The harbour is quiet before dawn."  # a sentence is not glued to half of the next
    assert min(len(piece) for piece in pieces) > 10  # no one-word orphans


def test_split_text__a_long_sentence_is_cut_into_even_pieces() -> None:
    sentence = "First scene words here, and a long sentence that keeps going for quite a while so it wraps."

    pieces = split_text(sentence)

    assert len(pieces) == 2 and abs(len(pieces[0]) - len(pieces[1])) < 15


def test_split_text__an_overlong_word_is_cut() -> None:
    pieces = split_text("see " + "x" * 200)

    assert all(len(piece) <= CUE_CHARS for piece in pieces) and "".join(pieces).replace(" ", "") == "see" + "x" * 200


def test_scene_cues__fill_the_scene_span_in_proportion_to_their_text() -> None:
    scene = Scene(index=2, heading=None, text=LONG, duration_s=9.0)

    cues = scene_cues(scene, 4.0, 9.0)

    assert cues[0].start_s == 4.0 and cues[-1].end_s == 13.0
    assert all(a.end_s == b.start_s for a, b in zip(cues, cues[1:]))
    assert all(cue.scene == 2 and cue.start_s < cue.end_s for cue in cues)
    lengths = [len(cue.text.replace(" ", "")) for cue in cues]
    shares = [(cue.end_s - cue.start_s) / 9.0 for cue in cues]
    assert shares == pytest.approx([n / sum(lengths) for n in lengths], abs=0.002)


def test_build_cues__scenes_follow_their_narration_lengths() -> None:
    scenes = [Scene(1, None, "One.", 1.0), Scene(2, None, "Two.", 1.0), Scene(3, None, "Three.", 1.0)]

    cues = build_cues(scenes, [1.25, 2.5, 0.75])

    assert [(c.start_s, c.end_s, c.text) for c in cues] == [(0.0, 1.25, "One."), (1.25, 3.75, "Two."),
                                                             (3.75, 4.5, "Three.")]


def test_write_vtt__parses_back_with_escaped_text_and_short_lines() -> None:
    cues = [Cue(0.0, 1.5, "Fish & chips <now> --> later", 1), Cue(1.5, 4.0, LONG[:CUE_CHARS], 1)]

    document = write_vtt(cues)
    parsed = parse_vtt(document)

    assert document.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\n")
    assert "&amp;" in document and "&lt;now&gt;" in document and "-->" not in document.split("\n")[4]
    assert [(c.start_s, c.end_s) for c in parsed] == [(0.0, 1.5), (1.5, 4.0)]
    assert parsed[0].text == "Fish & chips <now> --> later"
    assert all(len(line) <= LINE_CHARS for cue in parsed for line in cue.text.split("\n"))


def _source(tmp_path: Path, durations: list[float]) -> Path:
    """A source job's stored scenes.json and narration manifest (no real audio needed for the VTT)."""
    source = tmp_path / "source"
    files = local_files(source)
    scenes = [Scene(i, None, f"Scene number {i} speaks.", 1.0) for i in range(1, len(durations) + 1)]
    data = json_bytes({"version": 1, "scenes": [s.to_dict() for s in scenes]})
    files.write_manifest("scenes", [files.save_bytes("scenes.json", data, "scenes", "application/json")])
    audio = [files.save_bytes(f"audio/scene_{scene.index:03d}.wav", b"RIFF", "audio", "audio/wav",
                              {"scene": scene.index, "duration_s": seconds})
             for scene, seconds in zip(scenes, durations)]
    files.write_manifest("audio", audio)
    return source


def _inputs(tmp_path: Path, source: Path) -> StageInputs:
    out = tmp_path / "captions"
    return StageInputs(files=local_files(out), params={"source_job_id": "src"}, config=PipelineConfig(),
                       job_files=lambda job_id: local_files(source if job_id == "src" else tmp_path / "missing"))


def test_captions_stage__writes_the_vtt_timed_to_the_source_narration(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, _source(tmp_path, [2.0, 3.5]))

    [artifact] = captions_stage(inputs, NullContext())

    cues = parse_vtt(stored(tmp_path / "captions", artifact).read_text(encoding="utf-8"))
    assert artifact.kind == "captions" and artifact.content_type == "text/vtt"
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [(0.0, 2.0, "Scene number 1 speaks."),
                                                             (2.0, 5.5, "Scene number 2 speaks.")]
    assert artifact.meta["duration_s"] == 5.5 and artifact.meta["cues"] == 2


def test_captions_stage__missing_narration_or_source_is_a_clear_error(tmp_path: Path) -> None:
    source = _source(tmp_path, [2.0])
    (source / "manifests" / "audio.json").unlink()
    with pytest.raises(PermanentError, match="no audio artifacts"):
        captions_stage(_inputs(tmp_path, source), NullContext())

    gone = StageInputs(files=local_files(tmp_path / "out"), params={"source_job_id": "other"},
                       config=PipelineConfig(), job_files=lambda job_id: local_files(tmp_path / "missing"))
    with pytest.raises(PermanentError, match="files are gone"):
        captions_stage(gone, NullContext())


@pytest.mark.slow
def test_captions_job__burns_the_captions_into_a_video_of_the_same_length(tmp_path: Path) -> None:
    # given a finished full video, and a captions job whose scratch folder's name needs filtergraph escaping
    config = PipelineConfig(min_scene_seconds=1.0)
    source = tmp_path / "source"
    script = "# One\nFirst scene words here.\n\n# Two\nSecond scene."
    run_job("full_video", script, {"width": 320, "height": 180, "fps": 10}, local_files(source), NullContext(),
            config=config)

    # when the captions job runs on it
    out = tmp_path / "it's a: [weird], dir;"
    result = run_job("captions", None, {"source_job_id": "5f0c2b9e-0000-4000-8000-000000000001"}, local_files(out),
                     NullContext(), config=config, job_files=lambda job_id: local_files(source))

    # then it holds the VTT and a video as long as the source, with the captions timed to the narration
    assert [a["kind"] for a in result["artifacts"]] == ["captions", "video"]
    cues = parse_vtt((out / "captions.vtt").read_text(encoding="utf-8"))
    assert cues[-1].end_s == pytest.approx(result["duration_s"], abs=0.002)
    assert probe_duration(out / "video.mp4") == pytest.approx(probe_duration(source / "video.mp4"), abs=0.1)
