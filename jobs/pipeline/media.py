"""Inspect media files with the ffmpeg that imageio-ffmpeg ships (there is no ffprobe)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from .errors import PermanentError

_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_TIME = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): ([\w-]+)(.*)")
_SIZE = re.compile(r",\s*(\d+)x(\d+)")
PROBE_TIMEOUT_S = 120.0


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary; PermanentError if imageio-ffmpeg cannot provide one."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise PermanentError("video tools are not installed", detail=str(exc)) from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise PermanentError("video tools are not installed", detail=str(exc)) from exc


def _seconds(match: re.Match[str]) -> float:
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _ffmpeg_stderr(args: list[str]) -> str:
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
        capture_output=True,
        timeout=PROBE_TIMEOUT_S,
        check=False,
    )
    return result.stderr.decode("utf-8", "replace")


def _input_section(stderr: str, path: Path) -> str:
    if "Input #0" not in stderr:
        raise PermanentError(f"could not read media file {path.name}", detail=stderr[-1000:])
    # Only the input description: "-f null" adds Output stream lines that must not be counted.
    section = stderr.split("Input #0", 1)[1]
    return re.split(r"Output #0|Stream mapping:", section, maxsplit=1)[0]


def probe_duration(path: Path) -> float:
    """Duration in seconds, measured by decoding the whole file (falls back to the container's header)."""
    stderr = _ffmpeg_stderr(["-i", str(path), "-f", "null", "-"])
    section = _input_section(stderr, path)
    times = list(_TIME.finditer(stderr))
    if times:
        return _seconds(times[-1])
    header = _DURATION.search(section)
    if header is None:
        raise PermanentError(f"could not read the duration of {path.name}", detail=stderr[-1000:])
    return _seconds(header)


def probe_streams(path: Path) -> dict[str, Any]:
    """width, height, has_video, has_audio (plus video_codec, audio_codec, pix_fmt) of a media file."""
    # "ffmpeg -i" without an output prints the input description and exits non-zero, which is fine here.
    section = _input_section(_ffmpeg_stderr(["-i", str(path)]), path)
    info: dict[str, Any] = {
        "width": None,
        "height": None,
        "has_video": False,
        "has_audio": False,
        "video_codec": None,
        "audio_codec": None,
        "pix_fmt": None,
    }
    for match in _STREAM.finditer(section):
        kind, codec, rest = match.groups()
        if kind == "Video" and not info["has_video"]:
            size = _SIZE.search(rest)
            pix_fmt = re.match(r"[^,]*,\s*([\w]+)", rest)
            info |= {"has_video": True, "video_codec": codec, "pix_fmt": pix_fmt.group(1) if pix_fmt else None}
            if size:
                info |= {"width": int(size.group(1)), "height": int(size.group(2))}
        elif kind == "Audio" and not info["has_audio"]:
            info |= {"has_audio": True, "audio_codec": codec}
    return info
