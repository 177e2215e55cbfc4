"""Captions of a finished video: WebVTT cues timed to each scene's narration, then burned into a new MP4.

The source is another job's stored files (its scenes.json, narration manifest and video.mp4); this job
stores captions.vtt and video.mp4 under its own attempt's prefix. Cues stay inside their scene's time span; a long scene is
split into readable cues (at most two lines of LINE_CHARS), each lasting in proportion to its text.
"""
from __future__ import annotations

import math
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import Artifact, StageFiles, partial_path
from .context import StageContext
from .errors import PermanentError
from .media import ffmpeg_exe
from .runner import StageInputs
from .script import Scene, load_scenes
from .video import X264_PRESET, encode

CAPTIONS_FILE = "captions.vtt"
VIDEO_FILE = "video.mp4"
CAPTIONS_TEXT = "Writing captions"
BURN_TEXT = "Burning in captions"
# Common subtitle guidelines (BBC, Netflix): about 42 characters a line, two lines a cue.
LINE_CHARS = 42
MAX_LINES = 2
CUE_CHARS = MAX_LINES * LINE_CHARS
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Cue:
    """One caption: shown from `start_s` to `end_s`; `scene` is the 1-based scene it belongs to."""

    start_s: float
    end_s: float
    text: str
    scene: int


def split_text(text: str) -> list[str]:
    """Readable cue texts (at most MAX_LINES lines of LINE_CHARS): sentences together where they fit, long
    sentences cut into pieces of about equal length (no one-word orphan at the end)."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(" ".join(text.split())):
        # A word longer than a line (a URL) is cut, so every word fits on a line.
        words = [word[i:i + LINE_CHARS] for word in sentence.split() for i in range(0, len(word), LINE_CHARS)]
        pieces += _balanced(words)
    return _pack(pieces, CUE_CHARS)


def _fits(text: str) -> bool:
    return len(textwrap.wrap(text, LINE_CHARS)) <= MAX_LINES


def _pack(words: list[str], limit: int) -> list[str]:
    """Join consecutive words (or pieces) with spaces while the result has at most `limit` characters and fits."""
    out: list[str] = []
    for word in words:
        candidate = f"{out[-1]} {word}" if out else word
        if out and len(candidate) <= limit and _fits(candidate):
            out[-1] = candidate
        else:
            out.append(word)
    return out


def _balanced(words: list[str]) -> list[str]:
    """As few pieces as greedy packing needs, but of about equal length."""
    count = len(_pack(words, CUE_CHARS))
    if count > 1:
        for limit in range(math.ceil(len(" ".join(words)) / count), CUE_CHARS):
            pieces = _pack(words, limit)
            if len(pieces) <= count:
                return pieces
    return _pack(words, CUE_CHARS)


def scene_cues(scene: Scene, start_s: float, duration_s: float) -> list[Cue]:
    """The cues of one scene within [start_s, start_s + duration_s], each as long as its share of the text."""
    pieces = split_text(scene.text) or [scene.heading or ""]
    weights = [max(1, len(piece.replace(" ", ""))) for piece in pieces]
    total = sum(weights)
    # Integer milliseconds, so cue boundaries are exact and the last cue ends at the scene's end.
    start_ms, end_ms = round(start_s * 1000), round((start_s + duration_s) * 1000)
    cues: list[Cue] = []
    done = 0
    for piece, weight in zip(pieces, weights):
        cue_start = start_ms + (end_ms - start_ms) * done // total
        done += weight
        cue_end = start_ms + (end_ms - start_ms) * done // total
        cues.append(Cue(cue_start / 1000, cue_end / 1000, piece, scene.index))
    return cues


def build_cues(scenes: list[Scene], durations: list[float]) -> list[Cue]:
    """Every scene's cues, the scenes back to back as in the video (`durations` are the narration lengths)."""
    cues: list[Cue] = []
    start = 0.0
    for scene, duration in zip(scenes, durations, strict=True):
        cues += scene_cues(scene, start, duration)
        start += duration
    return cues


def vtt_timestamp(seconds: float) -> str:
    """WebVTT's `hh:mm:ss.ttt`."""
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def _escape(text: str) -> str:
    # In cue text `&` and `<` start entities and tags, and `-->` would end the timing line's meaning.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_vtt(cues: list[Cue]) -> str:
    """The WebVTT document of `cues`: numbered, each wrapped to lines of LINE_CHARS."""
    blocks = ["WEBVTT"]
    for number, cue in enumerate(cues, start=1):
        lines = [_escape(line) for line in textwrap.wrap(cue.text, LINE_CHARS, break_long_words=True)] or [""]
        blocks.append(f"{number}\n{vtt_timestamp(cue.start_s)} --> {vtt_timestamp(cue.end_s)}\n" + "\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def narration_durations(source: StageFiles, scenes: list[Scene]) -> list[float]:
    """Each scene's narration length in the source job (what its video shows each scene for)."""
    by_scene = {a.meta.get("scene"): a for a in source.load_artifacts("audio")}
    missing = [scene.index for scene in scenes if scene.index not in by_scene]
    if missing:
        raise PermanentError(f"the source video has no narration for scene {missing[0]}")
    return [float(by_scene[s.index].meta.get("duration_s") or s.duration_s) for s in scenes]


def _source_files(inputs: StageInputs) -> StageFiles:
    source = inputs.other_job_files(str(inputs.params["source_job_id"]))
    if not source.has_manifest("scenes"):
        raise PermanentError("the source video's files are gone (deleted or expired)")
    return source


def captions_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """Write captions.vtt from the source job's scenes and narration lengths."""
    ctx.check_cancelled()
    ctx.report(0.0, CAPTIONS_TEXT)
    source = _source_files(inputs)
    scenes = load_scenes(source)
    durations = narration_durations(source, scenes)
    cues = build_cues(scenes, durations)
    meta = {"cues": len(cues), "scenes": len(scenes), "duration_s": round(sum(durations), 3),
            "source_job_id": str(inputs.params["source_job_id"])}
    artifact = inputs.files.save_bytes(CAPTIONS_FILE, write_vtt(cues).encode("utf-8"), "captions", "text/vtt", meta)
    inputs.files.write_manifest("captions", [artifact])
    ctx.report(100.0, CAPTIONS_TEXT)
    return [artifact]


def filter_path(path: Path) -> str:
    """`path` escaped for a filtergraph option value (ffmpeg-filters "Notes on filtergraph escaping")."""
    value = str(path.resolve()).replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
    return "".join(f"\\{char}" if char in "\\'[],;" else char for char in value)


def burn_command(source: Path, captions: Path, output: Path) -> list[str]:
    """Re-encode the source video with the captions drawn in (libass); the audio is copied as it is."""
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
        "-i", str(source),
        "-vf", f"subtitles=filename={filter_path(captions)}",
        "-map", "0:v:0", "-map", "0:a?",
        "-c:v", "libx264", "-preset", X264_PRESET, "-crf", "23", "-pix_fmt", "yuv420p",
        "-c:a", "copy", "-movflags", "+faststart",
        "-f", "mp4", str(output),
    ]  # fmt: skip


class _StageText:
    """Passes progress through under this stage's own text (encode() reports "Encoding video")."""

    def __init__(self, parent: StageContext, text: str) -> None:
        self.parent, self.text = parent, text

    def report(self, progress: float, stage: str) -> None:
        self.parent.report(progress, self.text)

    def check_cancelled(self) -> None:
        self.parent.check_cancelled()


def burn_stage(inputs: StageInputs, ctx: StageContext) -> list[Artifact]:
    """video.mp4: the source job's video with this job's captions burned in; replaced atomically on success."""
    ctx.check_cancelled()
    ctx.report(0.0, BURN_TEXT)
    files = inputs.files
    source = _source_files(inputs)
    videos = source.load_artifacts("video")
    if not videos:
        raise PermanentError("the source job has no video")
    captions = files.load_artifacts("captions")[0]
    duration = float(captions.meta.get("duration_s") or videos[0].meta.get("duration_s") or 0.0)
    source_video, captions_file = source.fetch(videos[0]), files.fetch(captions)
    final = files.work_path(VIDEO_FILE)
    tmp = partial_path(final)
    try:
        encode(burn_command(source_video, captions_file, tmp), duration, _StageText(ctx, BURN_TEXT))
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise PermanentError("burning in the captions produced no video")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {**{k: v for k, v in videos[0].meta.items() if k in ("width", "height", "fps")},
            "duration_s": round(duration, 3), "captions": True}
    ctx.check_cancelled()  # a cancel during the encode's last moments wins over storing the video
    artifact = files.save(VIDEO_FILE, final, "video", "video/mp4", meta)
    files.write_manifest("video", [artifact])
    ctx.report(100.0, BURN_TEXT)
    return [artifact]


def captions_summary(files: StageFiles) -> dict[str, Any]:
    """The result fields of a captions job: its source, how many cues, how long the video lasts."""
    meta = files.load_artifacts("captions")[0].meta
    return {"source_job_id": meta.get("source_job_id"), "cues": meta.get("cues"), "scenes": meta.get("scenes"),
            "duration_s": meta.get("duration_s")}
