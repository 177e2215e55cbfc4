"""Stage 3: one mono 16-bit WAV per scene, exactly as long as the scene (espeak-ng, or a soft tone)."""
from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
import wave
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from .artifacts import Artifact, StageFiles, atomic_path, partial_path
from .config import PipelineConfig
from .context import StageContext, each_reported
from .errors import PermanentError, TransientError
from .script import Scene

AUDIO_DIR = "audio"
SAMPLE_RATE = 22050  # espeak-ng's native rate, so its output is never resampled
ENGINES = ("espeak-ng", "tone")
MAX_ESPEAK_RATE = 450  # espeak-ng's fastest speed
ESPEAK_TIMEOUT_S = 120.0
SILENCE_THRESHOLD = 300  # about -40 dBFS: below this, espeak's lead-in/out is silence
LEAD_IN_S = 0.15
FADE_OUT_S = 0.05
# Samples generated and written at a time: a scene of any length is produced in this much memory (128 KiB).
CHUNK_FRAMES = 1 << 16


def audio_name(index: int) -> str:
    """File name of scene `index`'s narration."""
    return f"scene_{index:03d}.wav"


def pick_engine(engine: str | None = None) -> str:
    """`engine` if given, else espeak-ng when it is on PATH, else the tone fallback."""
    if engine is None:
        return "espeak-ng" if shutil.which("espeak-ng") else "tone"
    if engine not in ENGINES:
        raise ValueError(f"unknown audio engine {engine!r}; expected one of {ENGINES}")
    if engine == "espeak-ng" and not shutil.which("espeak-ng"):
        raise PermanentError("speech synthesis is not available (espeak-ng is not installed)")
    return engine


def _to_little_endian(samples: array) -> array:
    # WAV is little-endian; array uses the machine's order.
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples


def read_wav(path: Path) -> tuple[array, int]:
    """Samples and rate of a mono 16-bit WAV."""
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise PermanentError("speech synthesis produced an unsupported audio format", detail=str(wav.getparams()))
        rate = wav.getframerate()
        samples = array("h", wav.readframes(wav.getnframes()))
    return _to_little_endian(samples), rate


def write_wav(path: Path, chunks: Iterable[array], rate: int) -> int:
    """Write mono 16-bit sample chunks to `path` atomically, one chunk at a time; the frames written."""
    frames = 0
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            for chunk in chunks:
                wav.writeframes(_to_little_endian(chunk).tobytes())
                frames += len(chunk)
    return frames


def silence(frames: int) -> Iterator[array]:
    """`frames` zero samples, in chunks of at most CHUNK_FRAMES."""
    while frames > 0:
        size = min(frames, CHUNK_FRAMES)
        yield array("h", bytes(2 * size))
        frames -= size


def _strip_silence(samples: array, rate: int) -> array:
    start = next((i for i, s in enumerate(samples) if abs(s) > SILENCE_THRESHOLD), None)
    if start is None:
        return array("h")
    end = next(i for i in range(len(samples) - 1, -1, -1) if abs(samples[i]) > SILENCE_THRESHOLD)
    pad = int(0.02 * rate)  # keep a breath either side so consonants are not clipped
    return samples[max(0, start - pad) : min(len(samples), end + pad + 1)]


def espeak(text: str, *, voice: str, rate_wpm: int, scratch: Path) -> tuple[array, int]:
    """Synthesize `text` with espeak-ng; text goes through stdin so nothing is parsed as an option."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise PermanentError("speech synthesis is not available (espeak-ng is not installed)")
    try:
        result = subprocess.run(
            [exe, "-v", voice, "-s", str(rate_wpm), "--stdin", "-w", str(scratch)],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=ESPEAK_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0 or not scratch.exists():
            raise PermanentError("speech synthesis failed", detail=result.stderr.decode("utf-8", "replace")[-1000:])
        return read_wav(scratch)
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"speech synthesis took longer than {ESPEAK_TIMEOUT_S:g} s") from exc
    except (wave.Error, EOFError) as exc:
        raise PermanentError("speech synthesis produced an unreadable file", detail=str(exc)) from exc
    finally:
        scratch.unlink(missing_ok=True)


def fitted(speech: array, frames: int, rate: int) -> Iterator[array]:
    """Exactly `frames` samples in chunks: speech after a short lead-in then silence, or cut with a fade-out."""
    if len(speech) >= frames:
        out = speech[:frames]
        fade = min(frames, int(FADE_OUT_S * rate))
        for i in range(fade):
            out[frames - fade + i] = int(out[frames - fade + i] * (fade - i) / fade)
        yield out
        return
    slack = frames - len(speech)
    lead = min(int(LEAD_IN_S * rate), slack // 2)
    yield from silence(lead)
    yield speech
    yield from silence(slack - lead)


def fit_to_length(speech: array, frames: int, rate: int) -> array:
    """`fitted` joined into one array (tests; the stage writes the chunks as they come)."""
    out = array("h")
    for chunk in fitted(speech, frames, rate):
        out += chunk
    return out


def narrate(scene: Scene, *, voice: str, rate_wpm: int, scratch: Path) -> tuple[Iterator[array], int]:
    """espeak-ng narration of `scene` fitted to its duration; speeds up rather than cutting words off.

    The speech itself is held in memory (at most JOB_MAX_SCENE_S of it, jobs/limits.py); the padding is not.
    """
    speech, rate = espeak(scene.text, voice=voice, rate_wpm=rate_wpm, scratch=scratch)
    speech = _strip_silence(speech, rate)
    frames = round(scene.duration_s * rate)
    if len(speech) > frames and rate_wpm < MAX_ESPEAK_RATE:
        # Durations are fixed by the parse stage (images and video rely on them), so a dense scene is
        # spoken faster; only if the fastest rate still overruns is the tail faded out.
        faster = min(MAX_ESPEAK_RATE, math.ceil(rate_wpm * len(speech) / frames * 1.05))
        speech, rate = espeak(scene.text, voice=voice, rate_wpm=faster, scratch=scratch)
        speech = _strip_silence(speech, rate)
    return fitted(speech, round(scene.duration_s * rate), rate), rate


def tone(scene: Scene, rate: int = SAMPLE_RATE) -> Iterator[array]:
    """A soft chime at the start of the scene, then silence, exactly `scene.duration_s` long, in chunks."""
    frames = round(scene.duration_s * rate)
    frequency = 440.0 * 2 ** (((scene.index - 1) % 8) / 12)  # a different note per scene
    chime = min(frames, int(0.6 * rate))
    attack = int(0.01 * rate)
    samples = array("h", bytes(2 * chime))
    for i in range(chime):
        t = i / rate
        envelope = min(1.0, i / attack) * math.exp(-6.0 * t)
        wave_value = math.sin(2 * math.pi * frequency * t) + 0.3 * math.sin(4 * math.pi * frequency * t)
        samples[i] = int(0.2 * 32767 * envelope * wave_value / 1.3)
    yield samples
    yield from silence(frames - chime)


# Bumped whenever the tone or the fitting of speech changes, so a retry narrates again (jobs/scenes.py).
NARRATION_VERSION = 1


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """The installed espeak-ng's version line (another version may speak differently)."""
    exe = shutil.which("espeak-ng")
    if not exe:
        return ""
    try:
        return subprocess.run([exe, "--version"], capture_output=True, timeout=10, check=False).stdout.decode(
            "utf-8", "replace").strip()[:200]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def narration_inputs(scene: Scene, *, params: dict[str, Any], config: PipelineConfig,
                     engine: str | None = None) -> dict[str, Any]:
    """Everything scene `scene`'s narration is made from: its fingerprint's inputs (jobs/pipeline/scenework.py)."""
    engine = pick_engine(engine or config.audio_engine)
    inputs: dict[str, Any] = {"kind": "audio", "engine": engine, "version": NARRATION_VERSION,
                              "index": scene.index, "duration_s": scene.duration_s}
    if engine == "espeak-ng":  # the tone depends on the scene's number and length only
        inputs |= {"text": scene.text, "voice": str(params.get("voice", "en")),
                   "rate_wpm": int(params.get("rate_wpm", config.words_per_minute)), "espeak": espeak_version()}
    return inputs


def narrate_scene(scene: Scene, files: StageFiles, *, params: dict[str, Any], config: PipelineConfig,
                  engine: str | None = None) -> tuple[Artifact, str]:
    """Speak one scene into scratch and store it as `audio/scene_NNN.wav`; its Artifact and sha256."""
    engine = pick_engine(engine or config.audio_engine)
    voice = str(params.get("voice", "en"))
    rate_wpm = int(params.get("rate_wpm", config.words_per_minute))
    relative = f"{AUDIO_DIR}/{audio_name(scene.index)}"
    path = files.work_path(relative)
    if engine == "espeak-ng":
        chunks, rate = narrate(scene, voice=voice, rate_wpm=rate_wpm, scratch=partial_path(path))
    else:
        chunks, rate = tone(scene), SAMPLE_RATE
    frames = write_wav(path, chunks, rate)
    meta = {"scene": scene.index, "voice": engine, "duration_s": round(frames / rate, 6), "sample_rate": rate}
    if engine == "espeak-ng":
        meta |= {"espeak_voice": voice, "rate_wpm": rate_wpm}
    with open(path, "rb") as fh:  # in chunks: an hour of narration is ~160 MB
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    artifact = files.save(relative, path, "audio", "audio/wav", meta)
    path.unlink(missing_ok=True)  # stored: scratch holds one scene's narration at a time
    return artifact, digest


def run_audio_stage(
    scenes: list[Scene],
    files: StageFiles,
    ctx: StageContext,
    *,
    params: dict[str, Any],
    config: PipelineConfig,
    engine: str | None = None,
) -> list[Artifact]:
    """Store `audio/scene_NNN.wav` per scene as it is made (written in scratch first), then the audio manifest.

    `engine` (or PIPELINE_AUDIO_ENGINE) forces "espeak-ng" or "tone"; by default espeak-ng is used when installed.
    """
    engine = pick_engine(engine or config.audio_engine)
    artifacts = [narrate_scene(scene, files, params=params, config=config, engine=engine)[0]
                 for scene in each_reported(scenes, ctx, "Generating narration")]
    files.write_manifest("audio", artifacts)
    return artifacts
