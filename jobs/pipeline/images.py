"""Stage 2: one PNG per scene, drawn deterministically with Pillow (or fetched from Stable Diffusion)."""
from __future__ import annotations

import colorsys
import hashlib
import io
import unicodedata
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .artifacts import Artifact, StageFiles
from .config import PipelineConfig
from .context import StageContext, each_reported
from .script import Scene

IMAGES_DIR = "images"
ELLIPSIS = "\u2026"
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def image_name(index: int) -> str:
    """File name of scene `index`'s image."""
    return f"scene_{index:03d}.png"


def frame_margin(width: int, height: int) -> int:
    """Blank border kept around all text, in pixels (6% of the short side)."""
    return max(4, round(min(width, height) * 0.06))


@lru_cache(maxsize=32)
def load_font(size: int, font_path: str | None = None) -> Font:
    """A font of `size` px: `font_path` if given, else Pillow's bundled scalable font (no system fonts)."""
    if font_path:
        return ImageFont.truetype(font_path, size)
    return ImageFont.load_default(size=size)


# Typographic characters the bundled font lacks, with look-alikes it has.
_LOOKALIKES = {
    "\u2014": "-", "\u2013": "-", "\u2212": "-", "\u00a0": " ", "\u2022": "*", "\u00ab": '"', "\u00bb": '"',
    "\u00df": "ss", "\u1e9e": "SS", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE",
    "\u00f8": "o", "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u20ac": "EUR",
}  # fmt: skip


@lru_cache(maxsize=64)
def _notdef(font: Font) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask("\U0010FFFF")  # a code point no font maps, so this is the "missing glyph" box
    return mask.size, bytes(mask)


@lru_cache(maxsize=8192)
def _has_glyph(font: Font, char: str) -> bool:
    if char.isspace():
        return True
    mask = font.getmask(char)
    return (mask.size, bytes(mask)) != _notdef(font)


def displayable(text: str, font: Font) -> str:
    """Replace characters `font` cannot draw: accents dropped (é→e), dashes simplified, others become "?".

    Pillow's bundled font covers ASCII only; set PIPELINE_FONT_PATH to e.g. a Noto font for other scripts.
    """
    out: list[str] = []
    for char in text:
        if _has_glyph(font, char):
            out.append(char)
            continue
        substitute = _LOOKALIKES.get(char) or "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c) and _has_glyph(font, c)
        )
        out.append(substitute or "?")
    return "".join(out)


def _line_height(font: Font) -> int:
    ascent, descent = font.getmetrics()  # type: ignore[union-attr]
    return ascent + descent


def _break_word(word: str, font: Font, max_width: float) -> list[str]:
    """Split a word wider than the frame into pieces that each fit."""
    pieces: list[str] = []
    current = ""
    for char in word:
        if current and font.getlength(current + char) > max_width:
            pieces.append(current)
            current = char
        else:
            current += char
    if current:
        pieces.append(current)
    return pieces


def _fit_with_ellipsis(line: str, font: Font, max_width: float) -> str:
    while line and font.getlength(line.rstrip() + ELLIPSIS) > max_width:
        # Drop a word at a time while there are several, then characters.
        line = line.rsplit(" ", 1)[0] if " " in line.strip() else line[:-1]
    return line.rstrip() + ELLIPSIS


def wrap_text(text: str, font: Font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap measured with `font`; at most `max_lines`, the last ending in "…" if cut short."""
    if max_lines <= 0:
        return []
    text = displayable(text, font)
    lines: list[str] = []
    # Stop one line past the limit: enough to know truncation is needed, and bounded work for huge scenes.
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            pieces = _break_word(word, font, max_width) if font.getlength(word) > max_width else [word]
            lines.extend(pieces[:-1])
            line = pieces[-1]
            if len(lines) > max_lines:
                break
        if line:
            lines.append(line)
        if len(lines) > max_lines:
            break
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _fit_with_ellipsis(lines[-1], font, max_width)
    return lines


def scene_colors(scene: Scene) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Top and bottom gradient colours, derived from a hash of the scene's words (dark, for white text)."""
    digest = hashlib.sha256(f"{scene.heading or ''}\x00{scene.text}".encode()).digest()
    hue = int.from_bytes(digest[:2], "big") / 65535
    shift = digest[2] / 255 * 0.15
    top = colorsys.hsv_to_rgb(hue, 0.55, 0.45)
    bottom = colorsys.hsv_to_rgb((hue + shift) % 1.0, 0.7, 0.16)
    as_bytes = lambda rgb: tuple(round(c * 255) for c in rgb)  # noqa: E731
    return as_bytes(top), as_bytes(bottom)  # type: ignore[return-value]


def _gradient(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    # One column stretched sideways: every row is a single colour, which keeps the output exact.
    column = Image.new("RGB", (1, height))
    span = max(1, height - 1)
    column.putdata([tuple(round(t + (b - t) * y / span) for t, b in zip(top, bottom)) for y in range(height)])
    return column.resize((width, height), Image.Resampling.NEAREST)


class _Card:
    """The text area of a title card: margins, a drop shadow, and a cursor `y` moving down the card."""

    def __init__(self, image: Image.Image, width: int, height: int) -> None:
        self.draw = ImageDraw.Draw(image)
        self.width = width
        self.margin = frame_margin(width, height)
        self.shadow = max(1, round(height / 360))
        self.max_width = width - 2 * self.margin - self.shadow
        self.bottom_limit = height - self.margin - self.shadow
        self.y = self.margin

    def put(self, x: float, text: str, font: Font, fill: tuple[int, int, int]) -> None:
        self.draw.text((x + self.shadow, self.y + self.shadow), text, font=font, fill=(0, 0, 0), anchor="la")
        self.draw.text((x, self.y), text, font=font, fill=fill, anchor="la")

    def label(self, text: str, font: Font) -> None:
        """One grey line at the top ("Scene 3 / 12"), if it fits."""
        lines = wrap_text(text, font, self.max_width, 1)
        if lines and self.y + _line_height(font) <= self.bottom_limit:
            self.put(self.margin, lines[0], font, (220, 220, 220))
            self.y += round(_line_height(font) * 1.4)

    def heading(self, text: str, font: Font) -> None:
        """Up to two warm lines under the label."""
        step = _line_height(font)
        room = max(0, (self.bottom_limit - self.y) // step)
        for line in wrap_text(text, font, self.max_width, min(2, room)):
            self.put(self.margin, line, font, (255, 235, 170))
            self.y += step
        self.y += step // 3

    def narration(self, text: str, font: Font) -> None:
        """As many centred white lines as fit, the block centred in the space left."""
        step = round(_line_height(font) * 1.2)
        glyph_height = _line_height(font)
        room = max(0, (self.bottom_limit - self.y - glyph_height) // step + 1) if self.bottom_limit - self.y >= glyph_height else 0
        lines = wrap_text(text, font, self.max_width, room)
        if not lines:
            return
        block = (len(lines) - 1) * step + glyph_height
        self.y += max(0, (self.bottom_limit - self.y - block) // 2)
        for line in lines:
            self.put((self.width - self.shadow - font.getlength(line)) / 2, line, font, (255, 255, 255))
            self.y += step


def render_scene_image(scene: Scene, *, width: int, height: int, total: int | None = None, font_path: str | None = None) -> bytes:
    """Draw scene `scene` as a PNG of width x height; same input gives byte-identical output."""
    image = _gradient(width, height, *scene_colors(scene))
    card = _Card(image, width, height)
    card.label(f"Scene {scene.index}" + (f" / {total}" if total else ""),
               load_font(max(8, round(height * 0.045)), font_path))
    if scene.heading and scene.heading != scene.text:
        card.heading(scene.heading, load_font(max(10, round(height * 0.065)), font_path))
    card.narration(scene.text, load_font(max(9, round(height * 0.055)), font_path))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _sd_image(scene: Scene, width: int, height: int, config: PipelineConfig) -> bytes:
    from .backends import stable_diffusion  # lazy: optional backend

    prompt = f"{scene.heading}. {scene.text}" if scene.heading and scene.heading != scene.text else scene.text
    image = stable_diffusion.txt2img(prompt, width=width, height=height, config=config)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# Bumped whenever the built-in card's drawing changes, so a retry renders old cards again (jobs/scenes.py).
BUILTIN_RENDERER_VERSION = 1


def image_renderer(config: PipelineConfig) -> str:
    return "stable-diffusion" if config.sd_api_url else "builtin"


def image_inputs(scene: Scene, *, total: int, params: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """Everything scene `scene`'s image is made from: its fingerprint's inputs (jobs/pipeline/scenework.py)."""
    renderer = image_renderer(config)
    inputs: dict[str, Any] = {"kind": "image", "index": scene.index, "heading": scene.heading, "text": scene.text,
                              "width": int(params.get("width", 1280)), "height": int(params.get("height", 720)),
                              "renderer": renderer}
    if renderer == "builtin":  # the card shows "Scene i / total" and uses the configured font
        from PIL import __version__ as pillow_version

        inputs |= {"total": total, "font_path": config.font_path,
                   "version": f"{BUILTIN_RENDERER_VERSION}/pillow-{pillow_version}"}
    else:  # the server, and the checkpoint asked of it (SD_MODEL; unset: the endpoint stands for its model)
        inputs |= {"endpoint": config.sd_api_url}
        if config.sd_model:  # only when set: images made before SD_MODEL existed keep their fingerprints
            inputs["model"] = config.sd_model
    return inputs


def render_image(scene: Scene, files: StageFiles, *, total: int, params: dict[str, Any],
                 config: PipelineConfig) -> tuple[Artifact, bytes]:
    """Draw (or fetch) one scene's image and store it as `images/scene_NNN.png`; its Artifact and bytes."""
    width, height = int(params.get("width", 1280)), int(params.get("height", 720))
    renderer = image_renderer(config)
    if renderer == "builtin":
        data = render_scene_image(scene, width=width, height=height, total=total, font_path=config.font_path)
    else:
        data = _sd_image(scene, width, height, config)
    meta = {"scene": scene.index, "width": width, "height": height, "renderer": renderer}
    return files.save_bytes(f"{IMAGES_DIR}/{image_name(scene.index)}", data, "image", "image/png", meta), data


def run_image_stage(
    scenes: list[Scene], files: StageFiles, ctx: StageContext, *, params: dict[str, Any], config: PipelineConfig
) -> list[Artifact]:
    """Store `images/scene_NNN.png` for every scene as it is drawn, then the image manifest; idempotent."""
    artifacts = [render_image(scene, files, total=len(scenes), params=params, config=config)[0]
                 for scene in each_reported(scenes, ctx, "Generating images")]
    files.write_manifest("image", artifacts)
    return artifacts
