"""Env-steps per second of ``gym.make_vec`` on HalfCheetahVel: the native vector env (the
family's batched simulator) against Gymnasium's ``sync`` and ``async`` vector envs, random
actions, measured side by side in one run (medians of interleaved rounds).

    python benchmarks/bench_vector.py [--envs 8 64 512] [--rounds 3] [--async-max 512]

The native env runs on all cores (``nthread=0``) and on one native thread; ``async`` starts
one process per sub-environment, so it is measured only up to ``--async-max`` envs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.memory import tune_allocator

ENV = "metarl/HalfCheetahVel-v0"


def make(mode: str, n: int) -> gym.vector.VectorEnv:
    if mode.startswith("native"):
        return gym.make_vec(ENV, num_envs=n, vectorization_mode="vector_entry_point",
                            nthread=1 if mode == "native, 1 thread" else 0)
    return gym.make_vec(ENV, num_envs=n, vectorization_mode=mode)


def rate(envs: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        envs.step(a)
    return actions.size / actions.shape[-1] / (time.perf_counter() - start)


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=40_000,
                        help="env-steps per measurement (at least 50 vector steps)")
    parser.add_argument("--async-max", type=int, default=512,
                        help="largest async vector env (512 processes took ~9 GB here)")
    args = parser.parse_args()
    print(f"{ENV}, random actions, env-steps/s, medians of {args.rounds} interleaved rounds")
    for n in args.envs:
        modes = ["native", "native, 1 thread", "sync"] + ["async"] * (n <= args.async_max)
        envs = {m: make(m, n) for m in modes}
        steps = max(50, args.env_steps // n)
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, 6)).astype(np.float32)
        rates: dict[str, list[float]] = {m: [] for m in modes}
        for e in envs.values():
            e.reset(seed=0)
            rate(e, actions[:10])  # warm-up
        for _ in range(args.rounds):
            for m, e in envs.items():
                rates[m].append(rate(e, actions))
        med = {m: statistics.median(r) for m, r in rates.items()}
        print(f"{n} envs: " + ", ".join(f"{m} {v:,.0f}" for m, v in med.items()))
        print(f"  ratio native/sync = {med['native'] / med['sync']:.2f}"
              + (f";  ratio native/async = {med['native'] / med['async']:.2f}"
                 if "async" in med else "")
              + f";  ratio native all cores / 1 thread = "
                f"{med['native'] / med['native, 1 thread']:.2f}")
        for e in envs.values():
            e.close()


if __name__ == "__main__":
    main()
