"""Summarise a py-spy collapsed-stack profile (`py-spy record -f raw -o FILE`): top functions by share.

    .venv/bin/python -m bench.profile_summary FILE [--top 15] [--grep run_stage]

Inclusive share = samples with the function anywhere on the stack; self share = samples where it is on top.
`--grep TEXT` keeps only the stacks containing TEXT (shares are then of those samples).
"""
from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--grep", default="")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in open(args.file):
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or args.grep not in stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].split("site-packages/")[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"{total} samples")
    print("self:")
    for frame, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {frame}")
    print("inclusive:")
    for frame, n in inclusive.most_common(args.top * 2):
        print(f"  {100 * n / total:5.1f} %  {frame}")


if __name__ == "__main__":
    main()
