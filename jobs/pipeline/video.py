"""Stage 4: images + narration -> H.264/AAC MP4 with the bundled ffmpeg, cancellable mid-encode."""
from __future__ import annotations

import collections
import os
import queue
import subprocess
import threading
import wave
from pathlib import Path
from typing import IO, Any, Callable

from .artifacts import Artifact, StageFiles, partial_path
from .config import PipelineConfig
from .context import StageContext
from .errors import PermanentError
from .media import ffmpeg_exe
from .script import Scene

VIDEO_FILE = "video.mp4"
STAGE_TEXT = "Encoding video"
POLL_S = 0.2  # how often cancellation is checked while ffmpeg is quiet (e.g. the faststart rewrite)
# ffmpeg notices signals only between input packets, and a still image held for a minute is one packet,
# so a polite SIGTERM can take as long as the rest of the encode. The output is discarded on cancel
# anyway, so it gets a short grace period before SIGKILL.
TERMINATE_GRACE_S = 0.5
# Measured on 10 scenes of 720p24 (bench/pipeline.py, 2 cores): veryfast 16.8 s / 1.0 MB,
# superfast 10.8 s / 1.3 MB, ultrafast 6.9 s / 4.4 MB. veryfast keeps files small for downloads.
X264_PRESET = "veryfast"
AUDIO_RATE = 44100  # AAC at 44.1 kHz plays everywhere; narration is upsampled by ffmpeg
CHUNK_FRAMES = 1 << 20


def _by_scene(artifacts: list[Artifact], scenes: list[Scene], kind: str) -> list[Artifact]:
    """Artifacts ordered like `scenes`, matched on meta["scene"]; PermanentError if any is missing."""
    index = {a.meta.get("scene"): a for a in artifacts}
    missing = [s.index for s in scenes if s.index not in index]
    if missing:
        raise PermanentError(f"the {kind} for scene {missing[0]} is missing; generate it again")
    return [index[s.index] for s in scenes]


def concat_wavs(paths: list[Path], target: Path) -> None:
    """Join WAVs of one format sample-exactly (streamed in chunks, so long jobs stay small in memory)."""
    try:
        _concat_wavs(paths, target)
    except (wave.Error, EOFError) as exc:
        raise PermanentError("a narration file is unreadable; generate the audio again", detail=str(exc)) from exc


def _concat_wavs(paths: list[Path], target: Path) -> None:
    with wave.open(str(target), "wb") as out:
        params = None
        for path in paths:
            with wave.open(str(path), "rb") as part:
                shape = (part.getnchannels(), part.getsampwidth(), part.getframerate())
                if params is None:
                    params = shape
                    out.setnchannels(shape[0])
                    out.setsampwidth(shape[1])
                    out.setframerate(shape[2])
                elif shape != params:
                    raise PermanentError("the narration files have different formats; generate the audio again")
                while frames := part.readframes(CHUNK_FRAMES):
                    out.writeframes(frames)


def _quote(path: Path) -> str:
    # ffconcat quoting: inside single quotes, a quote is written as '\''.
    return "'" + str(path.resolve()).replace("'", "'\\''") + "'"


def write_image_list(images: list[Path], durations: list[float], target: Path) -> None:
    """An ffconcat list showing each image for its duration."""
    lines = ["ffconcat version 1.0"]
    for path, seconds in zip(images, durations):
        lines += [f"file {_quote(path)}", f"duration {seconds:.6f}"]
    # The concat demuxer ignores the last entry's duration unless the file is listed once more.
    lines.append(f"file {_quote(images[-1])}")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def ffmpeg_command(image_list: Path, narration: Path, output: Path, *, width: int, height: int, fps: int, total_s: float) -> list[str]:
    """The encode command; progress goes to stdout as key=value lines."""
    # Scale and convert once per image, then let `fps` duplicate the finished frame: converting every
    # duplicated frame instead made encoding several times slower.
    # x/y of -1 centre the picture (ffmpeg 9 rejects the older "(ow-iw)/2" positional form here).
    scale = (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        f"pad=w={width}:h={height}:x=-1:y=-1:color=black,setsar=1,format=yuv420p,fps={fps}"
    )
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-xerror", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
        "-f", "concat", "-safe", "0", "-i", str(image_list),
        "-i", str(narration),
        "-map", "0:v:0", "-map", "1:a:0",
        "-vf", scale, "-r", str(fps),
        "-c:v", "libx264", "-preset", X264_PRESET, "-tune", "stillimage", "-crf", "23", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-ar", str(AUDIO_RATE),
        "-t", f"{total_s:.6f}",  # cut exactly at the narration's end
        "-movflags", "+faststart",
        "-f", "mp4", str(output),
    ]  # fmt: skip


def _pump(stream: IO[bytes], sink: Callable[[str], None], on_eof: Callable[[], None] | None = None) -> None:
    for raw in iter(stream.readline, b""):
        sink(raw.decode("utf-8", "replace").rstrip())
    if on_eof is not None:
        on_eof()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under `path`."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _output_guard(output: Path, budget: int | None) -> Callable[[], None]:
    """A check that fails the encode once `output` is larger than `budget` bytes (the job's scratch limit)."""

    def check() -> None:
        if budget is None:
            return
        try:
            size = output.stat().st_size
        except FileNotFoundError:
            return
        if size > budget:
            raise PermanentError(
                "the video outgrew the job's scratch space limit (JOB_MAX_SCRATCH_BYTES)",
                detail=f"{size} bytes written, {budget} left for the video")

    return check


def encode(cmd: list[str], total_s: float, ctx: StageContext, check: Callable[[], None] = lambda: None) -> None:
    """Run ffmpeg, reporting progress and checking cancellation and `check`; on an error ffmpeg is stopped."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
    # Both pipes are drained in threads: a full stderr pipe would otherwise block ffmpeg forever.
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, lines.put, lambda: lines.put(None)), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr_tail.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        position_us: int | None = None
        seen_us = False
        while True:
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                ctx.check_cancelled()
                check()
                continue
            if line is None:
                break
            key, _, value = line.partition("=")
            # out_time_ms is really microseconds too (a long-standing ffmpeg quirk); prefer out_time_us.
            if key in ("out_time_us", "out_time_ms") and value.strip().lstrip("-").isdigit():
                seen_us = seen_us or key == "out_time_us"
                if key == "out_time_us" or not seen_us:
                    position_us = max(0, int(value))  # negative before the first frame
            elif key == "progress":
                if position_us is not None and total_s > 0:
                    ctx.report(min(99.0, position_us / 1e6 / total_s * 100.0), STAGE_TEXT)
                ctx.check_cancelled()
                check()
        proc.wait()
        check()
    except BaseException:
        # JobCancelled, the scratch limit, a Celery soft time limit, Ctrl-C: never leave ffmpeg running.
        _stop(proc)
        raise
    finally:
        for reader in readers:
            reader.join(timeout=2.0)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    if proc.returncode != 0:
        raise PermanentError("video encoding failed", detail="\n".join(stderr_tail) or f"ffmpeg exited with {proc.returncode}")


def video_size(params: dict[str, Any]) -> tuple[int, int, int]:
    """(width, height, fps) of the job's video."""
    return int(params.get("width", 1280)), int(params.get("height", 720)), int(params.get("fps", 24))


def prepare_inputs(scenes: list[Scene], images: list[Artifact], audios: list[Artifact], files: StageFiles,
                   work: Path) -> list[float]:
    """Fetch the stored inputs and write ffmpeg's two inputs into `work` (one narration WAV, streamed; an
    image list); the durations."""
    images = _by_scene(images, scenes, "image")
    audios = _by_scene(audios, scenes, "narration")
    durations = [float(a.meta.get("duration_s") or s.duration_s) for a, s in zip(audios, scenes)]
    concat_wavs([files.fetch(a) for a in audios], work / "narration.wav")
    write_image_list([files.fetch(i) for i in images], durations, work / "images.ffconcat")
    return durations


def encode_to(final: Path, work: Path, ctx: StageContext, *, size: tuple[int, int, int], total_s: float,
              budget: int | None) -> None:
    """Encode the prepared inputs into `final`, replaced atomically on success only."""
    width, height, fps = size
    # A hidden ".video.<random>.partial" name: never mistaken for the finished file.
    tmp = partial_path(final)
    try:
        cmd = ffmpeg_command(work / "images.ffconcat", work / "narration.wav", tmp,
                             width=width, height=height, fps=fps, total_s=total_s)
        encode(cmd, total_s, ctx, _output_guard(tmp, budget))
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise PermanentError("video encoding produced no output")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def run_video_stage(
    scenes: list[Scene],
    images: list[Artifact],
    audios: list[Artifact],
    files: StageFiles,
    ctx: StageContext,
    *,
    params: dict[str, Any],
    config: PipelineConfig,
) -> list[Artifact]:
    """Encode `video.mp4` in scratch (each image for its narration's length) and store it on success only.

    Memory stays flat whatever the length: the narration is joined in chunks and ffmpeg reads and writes
    files. Scratch disk is held to `config.max_job_bytes` (the inputs fetched, the joined narration, the video).
    """
    if not scenes:
        raise PermanentError("there are no scenes to put in the video")
    size = video_size(params)
    ctx.check_cancelled()
    ctx.report(0.0, STAGE_TEXT)
    work = files.work_path("video-work/x").parent
    final = files.work_path(VIDEO_FILE)
    durations = prepare_inputs(scenes, images, audios, files, work)
    total_s = sum(durations)
    budget = None
    if config.max_job_bytes is not None:
        # Everything already in scratch (the fetched inputs, the joined narration) counts.
        budget = config.max_job_bytes - dir_bytes(files.scratch)
        if budget <= 0:
            raise PermanentError("the job's files already fill its scratch space limit (JOB_MAX_SCRATCH_BYTES)")
    encode_to(final, work, ctx, size=size, total_s=total_s, budget=budget)
    ctx.check_cancelled()  # a cancel during the encode's last moments wins over storing the video
    width, height, fps = size
    meta = {"width": width, "height": height, "fps": fps, "duration_s": round(total_s, 3), "scenes": len(scenes)}
    artifact = files.save(VIDEO_FILE, final, "video", "video/mp4", meta)
    files.write_manifest("video", [artifact])
    ctx.report(100.0, STAGE_TEXT)
    return [artifact]
