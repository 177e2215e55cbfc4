"""Time each pipeline stage on a generated 10-scene script; prints seconds per scene per stage.

Usage: .venv/bin/python bench/pipeline.py [--scenes N] [--width W --height H --fps F] [--engine tone|espeak-ng]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Runnable as a plain script from the repository root without installing the project.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.pipeline import PipelineConfig, StageFiles  # noqa: E402
from jobs.pipeline.audio import pick_engine, run_audio_stage  # noqa: E402
from jobs.pipeline.images import run_image_stage  # noqa: E402
from jobs.pipeline.script import run_parse_stage  # noqa: E402
from jobs.pipeline.video import run_video_stage  # noqa: E402
from jobs.plans import validate_params  # noqa: E402
from tests.doubles import NullContext  # noqa: E402

SENTENCES = (
    "The harbour wakes slowly under a pale sky.",
    "Fishing boats return with the tide, gulls circling above them.",
    "In the market, traders call out the prices of the morning catch.",
    "A child chases a kite along the sea wall while the wind picks up.",
    "By evening the lamps are lit and the town settles into quiet.",
)


def make_script(scenes: int) -> str:
    """A markdown script of `scenes` scenes, each a few sentences long."""
    parts = []
    for i in range(1, scenes + 1):
        body = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(3))
        parts.append(f"## Scene {i}\n{body}")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--engine", choices=("espeak-ng", "tone"), default=None)
    args = parser.parse_args()

    config = PipelineConfig.from_env()
    params = validate_params("full_video", {"width": args.width, "height": args.height, "fps": args.fps})
    engine = pick_engine(args.engine)
    ctx = NullContext()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        out = StageFiles.local(Path(tmp))
        started = time.perf_counter()
        scenes, _ = run_parse_stage(make_script(args.scenes), out, ctx, params=params, config=config)
        timings["parse"] = time.perf_counter() - started

        started = time.perf_counter()
        images = run_image_stage(scenes, out, ctx, params=params, config=config)
        timings["images"] = time.perf_counter() - started

        started = time.perf_counter()
        audios = run_audio_stage(scenes, out, ctx, params=params, config=config, engine=engine)
        timings["audio"] = time.perf_counter() - started

        started = time.perf_counter()
        [video] = run_video_stage(scenes, images, audios, out, ctx, params=params, config=config)
        timings["video"] = time.perf_counter() - started
        video_mb = video.bytes / 1e6

    n = len(scenes)
    media_s = sum(s.duration_s for s in scenes)
    print(f"{n} scenes, {media_s:.1f} s of video at {args.width}x{args.height}@{args.fps}, audio engine {engine}")
    print(f"{'stage':<8} {'total s':>9} {'s/scene':>9}")
    for stage, seconds in timings.items():
        print(f"{stage:<8} {seconds:>9.3f} {seconds / n:>9.3f}")
    total = sum(timings.values())
    print(f"{'total':<8} {total:>9.3f} {total / n:>9.3f}")
    print(f"video: {video_mb:.2f} MB, encoded at {media_s / timings['video']:.1f}x real time")


if __name__ == "__main__":
    main()
