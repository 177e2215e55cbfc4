"""Stage 1: split a script into timed scenes (built-in heading/paragraph parser, or Ollama if configured)."""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from .artifacts import Artifact, StageFiles, json_bytes
from .config import PipelineConfig
from .context import StageContext
from .errors import PermanentError, ValidationError

SCENES_FILE = "scenes.json"
STAGE_TEXT = "Parsing script"

# Screenplay sluglines: INT. / EXT. / INT./EXT. / INT/EXT / I/E.
_SLUGLINE = re.compile(r"^(?:INT\.?\s*/\s*EXT\.?|EXT\.?\s*/\s*INT\.?|I\s*/\s*E\.?|INT\.|EXT\.)(?:\s|$)", re.IGNORECASE)
# CommonMark ATX headings need a space after the hashes, so "#hashtag" stays narration.
_MARKDOWN = re.compile(r"^#{1,6}[ \t]+(\S.*?)(?:[ \t]+#+)?[ \t]*$")
# "Scene 3", "SCENE 3:", "Scene IV - Night"; a separator or end of line is required so prose such as
# "Scene 3 opens with…" is not mistaken for a heading.
_SCENE_N = re.compile(r"^scene[ \t]+(?:\d+|[ivxlcdm]+)[ \t]*(?:[:.)\-\u2013\u2014]|$)", re.IGNORECASE)
# C0/C1 control characters other than tab and newline confuse TTS and fonts; drop them.
_CONTROL = {cp: None for cp in [*range(0, 9), 11, 12, *range(14, 32), 127, *range(128, 160)]}


@dataclass(frozen=True)
class Scene:
    """One scene: `text` is the narration, `duration_s` how long it stays on screen."""

    index: int  # 1-based
    heading: str | None
    text: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        return cls(
            index=int(data["index"]),
            heading=data.get("heading"),
            text=str(data["text"]),
            duration_s=float(data["duration_s"]),
        )


def count_words(text: str) -> int:
    """Whitespace-separated words (scripts without spaces, such as CJK, count as few words)."""
    return len(text.split())


def scene_duration(text: str, *, words_per_minute: int, min_seconds: float) -> float:
    """Seconds needed to narrate `text` at `words_per_minute`, at least `min_seconds`, rounded to ms."""
    return round(max(min_seconds, count_words(text) / words_per_minute * 60.0), 3)


def heading_of(line: str) -> str | None:
    """The heading text if `line` starts a scene, else None."""
    stripped = line.strip()
    if match := _MARKDOWN.match(stripped):
        return match.group(1).strip()
    if _SLUGLINE.match(stripped) or _SCENE_N.match(stripped):
        return stripped
    return None


def _clean(script: str) -> str:
    return unicodedata.normalize("NFC", script.lstrip("\ufeff")).translate(_CONTROL)


def _join_paragraphs(lines: list[str]) -> str:
    """Collapse whitespace inside paragraphs; keep blank-line paragraph breaks as one blank line."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        words = line.split()
        if words:
            paragraphs[-1].append(" ".join(words))
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def split_script(script: str) -> list[tuple[str | None, str]]:
    """Split into (heading, narration) pairs: by headings if any, else by blank-line paragraphs."""
    lines = _clean(script).splitlines()
    if not any(heading_of(line) for line in lines):
        return [(None, text) for text in _join_paragraphs(lines).split("\n\n") if text]
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lines:
        heading = heading_of(line)
        if heading is not None:
            parts.append((heading, []))
        else:
            parts[-1][1].append(line)
    out: list[tuple[str | None, str]] = []
    for heading, body in parts:
        text = _join_paragraphs(body)
        if heading is None and not text:
            continue  # nothing before the first heading
        # A bare heading still deserves a scene; it is narrated as-is.
        out.append((heading, text or heading or ""))
    return out


def check_script_text(script: object, config: PipelineConfig) -> str:
    """Reject non-strings, empty and over-long scripts; returns the script."""
    if not isinstance(script, str):
        raise ValidationError("script", "must be a string")
    if not script.strip():
        raise ValidationError("script", "is empty")
    if len(script) > config.max_script_chars:
        raise ValidationError("script", f"is {len(script)} characters long; the maximum is {config.max_script_chars}")
    return script


def effective_max_scenes(config: PipelineConfig, max_scenes: int | None) -> int:
    """The stricter of the deployment limit and the job's own `max_scenes`."""
    return config.max_scenes if max_scenes is None else min(config.max_scenes, max_scenes)


def build_scenes(
    parts: list[tuple[str | None, str]], *, config: PipelineConfig, words_per_minute: int | None = None
) -> list[Scene]:
    """Number and time (heading, narration) pairs."""
    wpm = words_per_minute or config.words_per_minute
    return [
        Scene(
            index=i,
            heading=heading,
            text=text,
            duration_s=scene_duration(text, words_per_minute=wpm, min_seconds=config.min_scene_seconds),
        )
        for i, (heading, text) in enumerate(parts, start=1)
    ]


def parse_script(
    script: str,
    *,
    config: PipelineConfig | None = None,
    max_scenes: int | None = None,
    words_per_minute: int | None = None,
) -> list[Scene]:
    """Split `script` into timed scenes with the built-in parser; ValidationError for unusable scripts."""
    config = config or PipelineConfig()
    check_script_text(script, config)
    scenes = build_scenes(split_script(script), config=config, words_per_minute=words_per_minute)
    if not scenes:
        raise ValidationError("script", "is empty")
    limit = effective_max_scenes(config, max_scenes)
    if len(scenes) > limit:
        raise ValidationError("script", f"has {len(scenes)} scenes; the maximum is {limit}")
    return scenes


def validate_script(script: str, config: PipelineConfig | None = None, *, max_scenes: int | None = None) -> list[Scene]:
    """Pre-flight check the API runs before creating a job; returns the scenes it would produce."""
    return parse_script(script, config=config, max_scenes=max_scenes)


def run_parse_stage(
    script: str, files: StageFiles, ctx: StageContext, *, params: dict[str, Any], config: PipelineConfig
) -> tuple[list[Scene], list[Artifact]]:
    """Parse `script` and store `scenes.json`; idempotent."""
    ctx.check_cancelled()
    ctx.report(0.0, STAGE_TEXT)
    wpm = params.get("rate_wpm")
    max_scenes = params.get("max_scenes")
    if config.ollama_url:
        from .backends import ollama  # imported lazily: most deployments never use it

        check_script_text(script, config)
        scenes = build_scenes(ollama.split_scenes(_clean(script), config=config), config=config, words_per_minute=wpm)
        limit = effective_max_scenes(config, max_scenes)
        if len(scenes) > limit:
            raise PermanentError(f"the scene splitter returned {len(scenes)} scenes; the maximum is {limit}")
        source = "ollama"
    else:
        scenes = parse_script(script, config=config, max_scenes=max_scenes, words_per_minute=wpm)
        source = "builtin"
    ctx.check_cancelled()
    total = round(sum(s.duration_s for s in scenes), 3)
    data = json_bytes({"version": 1, "source": source, "duration_s": total, "scenes": [s.to_dict() for s in scenes]})
    artifact = files.save_bytes(SCENES_FILE, data, "scenes", "application/json",
                                {"count": len(scenes), "source": source, "duration_s": total})
    files.write_manifest("scenes", [artifact])
    ctx.report(100.0, STAGE_TEXT)
    return scenes, [artifact]


def load_scenes(files: StageFiles) -> list[Scene]:
    """Read the scenes the parse stage stored; PermanentError if it has not run."""
    try:
        stored = files.load_artifacts("scenes")
    except PermanentError:
        raise PermanentError("no scenes yet; the parse stage has not completed") from None
    try:
        data = files.read_json(stored[0].key)
        return [Scene.from_dict(item) for item in data["scenes"]]
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise PermanentError("scenes.json is unreadable", detail=str(exc)) from exc
