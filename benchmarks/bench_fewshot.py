"""Training episodes per second of every few-shot method on Omniglot, measured in one run:
MAML, ProtoNets, Matching Networks, the meta-learner LSTM and the pretraining baseline, each
with its CPU preset's settings (``omniglot-5w1s-cpu`` for MAML, ``omniglot-5w1s-<method>-cpu``
for the others), through its own training loop (the algorithms' registry).

    OMP_NUM_THREADS=1 python benchmarks/bench_fewshot.py [--setting 5w1s] [--repeats 3]

An episode is one task of the training loop: a meta-batch of 32 is 32 episodes; ProtoNets'
training episodes are 60-way; the pretraining baseline's step counts the 32 tasks whose
drawings it holds. Each repeat times ``--iterations`` steps after one warm-up step; repeats are
interleaved so every method sees the same machine load; the medians are printed with the ratio
to MAML's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

import torch

from metarl.algos import ALGORITHMS
from metarl.memory import tune_allocator
from metarl.scripts.presets import PRESETS

METHODS = ("maml", "protonets", "matchingnets", "meta-lstm", "pretrain")


class Timer:
    """Stands in for a run: records when each training iteration ends, logs nothing."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def end_iteration(self, iteration: int, metrics: Any, state: Any) -> None:
        self.ends.append(time.perf_counter())


def seconds_per_iteration(config: Any, family: Any, iterations: int) -> float:
    """Median seconds of the training loop's iterations after the first (warm-up)."""
    timer = Timer()
    meta = replace(config.meta, iterations=iterations + 1)
    ALGORITHMS[type(config.algo)](config.algo, family, meta, timer, None)
    return statistics.median(b - a for a, b in zip(timer.ends, timer.ends[1:]))


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="5w1s", choices=("5w1s", "5w5s", "20w1s", "20w5s"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    configs = {}
    for method in METHODS:
        preset = (f"omniglot-{args.setting}-cpu" if method == "maml"
                  else f"omniglot-{args.setting}-{method}-cpu")
        if preset not in PRESETS:  # MAML has a CPU preset for 5w1s only
            preset = f"omniglot-{args.setting}"
        configs[method] = PRESETS[preset][1]
    family = configs["maml"].prepare()  # the same tasks for every method
    print(f"omniglot {args.setting}, torch threads={args.threads}, {args.repeats} repeats of "
          f"{args.iterations} iterations, medians")
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:
            seconds[method].append(seconds_per_iteration(configs[method], family,
                                                         args.iterations))
    maml = configs["maml"].meta.meta_batch / statistics.median(seconds["maml"])
    for method in METHODS:
        meta = configs[method].meta
        per_second = meta.meta_batch / statistics.median(seconds[method])
        print(f"{method:13s} {per_second:8.2f} episodes/s  ({meta.meta_batch} a step, "
              f"{1e3 * statistics.median(seconds[method]):7.0f} ms a step)  ratio to MAML "
              f"{per_second / maml:6.2f}x")


if __name__ == "__main__":
    main()
