"""What training videos cost: ``metarl-train PRESET --video-every N`` against the same run
without videos, side by side in one process (arms interleaved, medians of ``--repeats``).

    python benchmarks/bench_video.py [--preset nav2d] [--iterations 50] [--video-every 50]

Each arm trains the preset (its default settings) for ``--iterations`` meta-iterations from
scratch through ``metarl-train``'s own code path; the video arm writes TensorBoard videos
every ``--video-every`` iterations. A shorter run with the same ``--iterations`` and
``--video-every`` (e.g. 10 and 10) holds one video per ``--iterations`` iterations; the line
``ratio at every 50`` rescales its extra time to one video per 50 iterations.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from metarl.memory import tune_allocator
from metarl.scripts import train
from metarl.scripts.presets import PRESETS


def seconds(preset: str, iterations: int, video_every: int, out: Path) -> float:
    config = PRESETS[preset][1]
    rl = replace(config.rl, iterations=iterations, video_every=video_every,
                 checkpoint_every=iterations)
    start = time.perf_counter()
    train.train(replace(config, rl=rl, out=str(out)), progress=False)
    return time.perf_counter() - start


def main() -> None:
    tune_allocator()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nav2d")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--video-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    without, with_videos = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            without.append(seconds(args.preset, args.iterations, 0, Path(tmp) / f"a{r}"))
            with_videos.append(seconds(args.preset, args.iterations, args.video_every,
                                       Path(tmp) / f"b{r}"))
            print(f"  repeat {r}: {without[-1]:.1f} s without, {with_videos[-1]:.1f} s with "
                  "videos", flush=True)
    a, b = statistics.median(without), statistics.median(with_videos)
    videos = args.iterations // args.video_every
    print(f"{args.preset}, {args.iterations} iterations: {a:.1f} s without videos, {b:.1f} s "
          f"with --video-every {args.video_every} ({videos} video(s)); ratio with/without = "
          f"{b / a:.3f}")
    if videos:
        per_video = (b - a) / videos
        print(f"one video {per_video:.1f} s, one iteration {a / args.iterations:.2f} s; "
              f"ratio at every 50 = {1 + per_video / (50 * a / args.iterations):.3f}")


if __name__ == "__main__":
    main()
