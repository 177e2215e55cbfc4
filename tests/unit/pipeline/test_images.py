"""Stage 2: scene images."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from jobs.pipeline import JobCancelled, PipelineConfig, Scene, load_artifacts, render_scene_image, run_image_stage
from jobs.pipeline.images import displayable, frame_margin, load_font, wrap_text
from tests.doubles import NullContext, RecordingContext
from tests.unit.pipeline.conftest import local_files, stored

LONG_TEXT = " ".join(f"word{i} lengthy-narration" for i in range(400)) + " " + "x" * 300


def _scene(index: int = 1, text: str = "A lighthouse on a cliff.", heading: str | None = None) -> Scene:
    return Scene(index=index, heading=heading, text=text, duration_s=2.0)


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_render_scene_image__has_requested_size() -> None:
    image = Image.open(io.BytesIO(render_scene_image(_scene(), width=320, height=180)))
    assert image.format == "PNG"
    assert image.size == (320, 180)
    assert image.mode == "RGB"


def test_render_scene_image__is_deterministic() -> None:
    scene = _scene(heading="INT. LIGHTHOUSE - NIGHT")
    first = render_scene_image(scene, width=320, height=180, total=3)
    second = render_scene_image(scene, width=320, height=180, total=3)
    assert first == second


def test_render_scene_image__background_depends_on_text() -> None:
    a = _open(render_scene_image(_scene(text="Morning."), width=64, height=64))
    b = _open(render_scene_image(_scene(text="Evening."), width=64, height=64))
    assert a.getpixel((0, 0)) != b.getpixel((0, 0))


@pytest.mark.parametrize(("width", "height"), [(320, 180), (640, 360), (180, 320)])
def test_render_scene_image__long_text_stays_inside_the_margins(width: int, height: int) -> None:
    # The background is a vertical gradient, so every row of pure background is one colour.
    image = _open(render_scene_image(_scene(text=LONG_TEXT, heading="A very long heading " * 10), width=width, height=height, total=200))
    margin = frame_margin(width, height)
    px = image.load()
    for y in range(height):
        background = px[0, y]
        columns = range(width) if y < margin or y >= height - margin else [*range(margin), *range(width - margin, width)]
        assert all(px[x, y] == background for x in columns), f"text in the margin at row {y}"
    # ...and the text really uses the width: something is drawn near the right margin.
    inner_right = range(width - margin - max(8, width // 12), width - margin)
    assert any(px[x, y] != px[0, y] for x in inner_right for y in range(margin, height - margin))


def test_wrap_text__lines_fit_and_overflow_ends_with_ellipsis() -> None:
    font = load_font(14)
    lines = wrap_text(LONG_TEXT, font, 200, 5)
    assert len(lines) == 5
    assert all(font.getlength(line) <= 200 for line in lines)
    assert lines[-1].endswith("\u2026")


def test_wrap_text__breaks_words_wider_than_the_frame() -> None:
    font = load_font(14)
    lines = wrap_text("a" * 200, font, 100, 50)
    assert len(lines) > 1
    assert "".join(lines) == "a" * 200
    assert all(font.getlength(line) <= 100 for line in lines)


def test_wrap_text__short_text_is_untouched() -> None:
    assert wrap_text("Hello there", load_font(14), 500, 3) == ["Hello there"]


def test_displayable__replaces_glyphs_the_font_lacks() -> None:
    font = load_font(14)
    assert displayable("Café — straße", font) == "Cafe - strasse"
    assert displayable("漢", font) == "?"


def test_render_scene_image__unicode_and_emoji_do_not_crash() -> None:
    data = render_scene_image(_scene(text="漢字 🎬 Ελληνικά العربية\u200b", heading="Über"), width=128, height=72)
    assert _open(data).size == (128, 72)


def test_run_image_stage__one_png_per_scene(tmp_path: Path, config: PipelineConfig) -> None:
    scenes = [_scene(i, f"Scene number {i}.") for i in range(1, 4)]
    ctx = RecordingContext()
    artifacts = run_image_stage(scenes, local_files(tmp_path), ctx, params={"width": 160, "height": 90}, config=config)
    assert [stored(tmp_path, a).relative_to(tmp_path).as_posix() for a in artifacts] == [
        "images/scene_001.png", "images/scene_002.png", "images/scene_003.png",
    ]  # fmt: skip
    assert all(a.kind == "image" and a.content_type == "image/png" and a.bytes == stored(tmp_path, a).stat().st_size for a in artifacts)
    assert ctx.reports[-1] == (100.0, "Generating images (3/3)")
    assert [stage for _, stage in ctx.reports] == [f"Generating images ({i}/3)" for i in range(4)]
    assert load_artifacts(local_files(tmp_path), "image") == artifacts


def test_run_image_stage__rerun_gives_identical_files(tmp_path: Path, config: PipelineConfig) -> None:
    scenes = [_scene(i, f"Scene {i}.") for i in range(1, 4)]
    first = run_image_stage(scenes, local_files(tmp_path), NullContext(), params={"width": 160, "height": 90}, config=config)
    before = stored(tmp_path, first[0]).read_bytes()
    run_image_stage(scenes, local_files(tmp_path), NullContext(), params={"width": 160, "height": 90}, config=config)
    assert stored(tmp_path, first[0]).read_bytes() == before


def test_run_image_stage__cancel_after_second_scene(tmp_path: Path, config: PipelineConfig) -> None:
    scenes = [_scene(i, f"Scene {i}.") for i in range(1, 6)]
    ctx = RecordingContext(cancel_after_checks=2)
    with pytest.raises(JobCancelled):
        run_image_stage(scenes, local_files(tmp_path), ctx, params={"width": 160, "height": 90}, config=config)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["scene_001.png", "scene_002.png"]
    assert ctx.checks == 3  # stopped at the check before scene 3
    assert not (tmp_path / "manifests" / "image.json").exists()
