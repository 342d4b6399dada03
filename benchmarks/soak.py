"""Soak: many meta-iterations in one process, resident memory and speed sampled as they go, to
show that nothing drifts (no growth, no NaN, no slow-down, no hang).

    python benchmarks/soak.py [--nav-iterations 1000] [--sinusoid-iterations 1000] [--every 50]
                              [--nav-meta-batch 20] [--nav-episodes 20]

MAML-TRPO on 2D navigation with the ``nav2d`` preset's settings (or a smaller meta-batch, for a
shorter soak), then sinusoid MAML with the ``sinusoid`` preset's, each through
``metarl-train``'s own code path (``train.train``), in the same process. Prints one line per
window of ``--every`` iterations and a summary whose ``ratio`` lines compare the end with the
first window after warm-up.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from metarl.checkpoint import load_checkpoint
from metarl.logger import Run
from metarl.memory import resident_mb, tune_allocator
from metarl.scripts import train
from metarl.scripts.presets import PRESETS


def soak(preset: str, iterations: int, every: int, out: Path, **settings
         ) -> list[tuple[int, float, float]]:
    """``(iteration, resident MB, iterations/s over the window)`` every ``every`` iterations;
    ``settings`` override the preset's."""
    config = PRESETS[preset][1]
    settings = replace(config.settings, iterations=iterations, checkpoint_every=every,
                       log_every=every, **settings)
    config = replace(config, out=str(out / preset),
                     **{"meta" if preset == "sinusoid" else "rl": settings})
    samples: list[tuple[int, float, float]] = []
    end_iteration, last = Run.end_iteration, [time.perf_counter()]

    def sampled(self, iteration, metrics, state, **videos):  # the loop's own, observed
        end_iteration(self, iteration, metrics, state, **videos)
        if iteration % every == 0:
            now = time.perf_counter()
            samples.append((iteration, resident_mb(), every / (now - last[0])))
            print(f"  {preset} iteration {iteration}: {samples[-1][1]:.0f} MB resident, "
                  f"{samples[-1][2]:.2f} it/s", flush=True)
            last[0] = now

    Run.end_iteration = sampled
    try:
        path = train.train(config, progress=False)
    finally:
        Run.end_iteration = end_iteration
    params = load_checkpoint(path)["state"]["params"]
    assert all(torch.isfinite(v).all() for v in params.values()), "non-finite parameters"
    return samples


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nav-iterations", type=int, default=1000)
    parser.add_argument("--sinusoid-iterations", type=int, default=1000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--nav-meta-batch", type=int, default=None)
    parser.add_argument("--nav-episodes", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as out:
        for preset, n in (("nav2d", args.nav_iterations),
                          ("sinusoid", args.sinusoid_iterations)):
            if n < 2 * args.every:
                continue
            smaller = {k: v for k, v in (("meta_batch", args.nav_meta_batch),
                                         ("episodes", args.nav_episodes)) if v is not None}
            s = soak(preset, n, args.every, Path(out), **(smaller if preset == "nav2d" else {}))
            warm, end = s[1], s[-1]  # the first window includes start-up
            what = f"{preset} {smaller}" if preset == "nav2d" and smaller else preset
            print(f"{what}: {n} iterations; resident memory {warm[1]:.0f} MB at iteration "
                  f"{warm[0]}, {end[1]:.0f} MB at {end[0]}; ratio end/warm memory = "
                  f"{end[1] / warm[1]:.3f}; {warm[2]:.2f} -> {end[2]:.2f} it/s, ratio end/warm "
                  f"speed = {end[2] / warm[2]:.2f}; peak over the run "
                  f"{max(m for _, m, _ in s):.0f} MB")
            assert all(math.isfinite(m) for _, m, _ in s)


if __name__ == "__main__":
    main()
