"""Sampling one HalfCheetahVel meta-batch phase in the process against Ray actors (1 and 2),
side by side (interleaved rounds) in one run, with Ray's per-phase overhead, and a projection
on paper from the measured per-actor throughput and overheads to 8, 32 and 128 cores.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_distributed.py [--tasks 8] [--rounds 5]

* local: ``metarl.sampler.sample`` on one lockstep simulator, MuJoCo on all cores (the
  default) and on one thread (what one Ray actor has).
* ray K: ``RaySampler`` with K actors on a local Ray: the per-task params put once into the
  object store, each actor samples its shard, the driver joins the episodes.
* overhead: the same phases at horizon 1 (almost no simulation): what Ray adds per phase
  (submission, object store, fetching and joining the shards), against the local sampler's;
  and the driver's own, serial share (submitting; fetching and joining once all are done).
* projection: a phase on K cores = that overhead + the driver's share (a part per actor, a
  part per env-step) + the largest shard (tasks are not split) at one core's measured rate.

Torch runs on one thread everywhere (the RL runs' default). Ray gets 11 logical CPUs so the
1-, 2- and 8-actor samplers live side by side; only one of them works at a time (the 8 only
at horizon 1, to time the driver's share per actor). Every Ray phase's
episodes are checked equal to the local sampler's. Medians over rounds; ratios from medians.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import gymnasium
import numpy as np
import torch

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs import make_batched
from metarl.envs.ray_sampler import RaySampler
from metarl.params import params_of
from metarl.policies import make_policy
from metarl.sampler import sample

ENV = "metarl/HalfCheetahVel-v0"


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def project(cores: int, tasks: int, steps_per_task: int, rate: float, base: float,
            per_actor: float, per_step: float) -> tuple[int, float]:
    """Seconds of one phase on ``cores`` actors (at most one per task): the serial driver
    work (``base`` + ``per_actor`` per extra actor + ``per_step`` per env-step fetched and
    joined) plus the largest shard's simulation at ``rate`` env-steps/s per actor."""
    actors = min(cores, tasks)
    largest = math.ceil(tasks / actors)
    return actors, (base + (actors - 1) * per_actor + tasks * steps_per_task * per_step
                    + largest * steps_per_task / rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    n, E, T = args.tasks, args.episodes, args.horizon
    env = gymnasium.make(ENV).unwrapped
    tasks = env.sample_tasks(n, np.random.default_rng(0))
    torch.manual_seed(0)
    policy = make_policy(env.observation_space.shape[0], env.action_space.shape[0], (64, 64),
                         "tanh")
    params = {k: v.detach() + 0.05 * torch.randn(n, *v.shape)
              for k, v in params_of(policy).items()}

    start = time.perf_counter()
    ray.init(num_cpus=11, include_dashboard=False, logging_level="ERROR")
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    remote = {k: RaySampler(ENV, policy, E, actors=k) for k in (1, 2)}
    actors_s = time.perf_counter() - start
    # 8 actors on the 2 cores: only to time the driver's share per actor (submitting, then
    # fetching and joining once all are done), which does not depend on the cores.
    remote[8] = RaySampler(ENV, policy, E, actors=8)
    sims = {"local": make_batched(ENV, n * E), "local, 1 thread": make_batched(ENV, n * E, 1)}

    def phase(name: str, horizon: int, seed: int) -> None:
        if name in sims:
            sample(policy, params, tasks, sims[name], E, horizon, seed)
            return
        # Ray: the phase, and the driver's own (serial) share of it: submitting, and fetching
        # and joining the shards once they are all done.
        sampler = remote[int(name.split()[1])]
        start = time.perf_counter()
        calls = sampler.submit(params, tasks, horizon, seed)
        submitted = time.perf_counter()
        ray.wait([call for _, _, call, _ in calls], num_returns=len(calls))
        done = time.perf_counter()
        sampler.gather(calls)
        driver[name, horizon].append(submitted - start + time.perf_counter() - done)

    names = ["local", "local, 1 thread", "ray 1", "ray 2"]
    driver: dict[tuple[str, int], list[float]] = {(k, h): [] for k in names[2:] for h in (1, T)}
    driver["ray 8", 1] = []
    for name in names[2:]:  # warm-up, and the episodes are the local sampler's
        got = remote[int(name.split()[1])].sample(params, tasks, T, 0)
        want = sample(policy, params, tasks, sims["local"], E, T, 0)
        assert all(torch.equal(getattr(got, f), getattr(want, f))
                   for f in ("observations", "actions", "rewards", "log_probs", "mask")), name
    full = {name: [] for name in names}
    tiny = {name: [] for name in names[1:]}
    for r in range(args.rounds):
        for name in names:
            full[name].append(timed(phase, name, T, r + 1))
        for name in tiny:
            tiny[name].append(timed(phase, name, 1, r + 1))
        phase("ray 8", 1, r + 1)
    full = {k: statistics.median(v) for k, v in full.items()}
    tiny = {k: statistics.median(v) for k, v in tiny.items()}
    driver = {k: statistics.median(v) for k, v in driver.items()}
    steps = n * E * T
    for k in list(remote):
        remote.pop(k).close()
    ray.shutdown()

    print(f"HalfCheetahVel, {n} tasks x {E} episodes x {T} steps = {steps:,} env-steps a "
          f"phase; medians of {args.rounds} interleaved rounds; ray.init {init_s:.1f} s, "
          f"starting 3 actors {actors_s:.1f} s (once per run)")
    for name in names:
        print(f"  {name:16s} {full[name]:7.3f} s a phase  {steps / full[name]:9,.0f} env-steps/s"
              + (f"  (driver's own share {driver[name, T] * 1e3:.1f} ms)" if name in tiny
                 and name != "local, 1 thread" else ""))
    print(f"ratio ray 1 / local, 1 thread   {full['ray 1'] / full['local, 1 thread']:.3f}  "
          "(Ray's cost on the same core)")
    print(f"ratio ray 2 / local             {full['ray 2'] / full['local']:.3f}  "
          "(2 actors against MuJoCo's own 2 threads)")
    print(f"ratio local, 1 thread / ray 2   {full['local, 1 thread'] / full['ray 2']:.3f}  "
          "(speed-up of 2 actors over one core)")
    latency = tiny["ray 1"] - tiny["local, 1 thread"]
    print(f"Ray's overhead a phase (horizon 1, against the local sampler's): {latency * 1e3:.1f}"
          f" ms with 1 actor, {(tiny['ray 2'] - tiny['local, 1 thread']) * 1e3:.1f} ms with 2; "
          f"a MAML-TRPO iteration with 1 inner step has 2 phases")

    # The model: the latency of one actor's round trip, plus the driver's serial share
    # (submitting, fetching, joining: a fixed part, a part per actor and a part per env-step),
    # plus the largest shard's simulation at one core's rate.
    rate = steps / full["local, 1 thread"]
    per_actor = max(0.0, (driver["ray 8", 1] - driver["ray 1", 1]) / 7)
    per_step = max(0.0, (driver["ray 1", T] - driver["ray 1", 1]) / steps)
    print(f"driver's share at horizon 1: {driver['ray 1', 1] * 1e3:.1f} ms with 1 actor, "
          f"{driver['ray 8', 1] * 1e3:.1f} ms with 8; at horizon {T} with 1 actor "
          f"{driver['ray 1', T] * 1e3:.1f} ms")
    fixed = latency
    print(f"\nProjection (on paper): {rate:,.0f} env-steps/s an actor (one core); overhead "
          f"{fixed * 1e3:.1f} ms a phase + {per_actor * 1e3:.2f} ms of the driver's an extra "
          f"actor + {per_step * 1e9:.0f} ns of the driver's an env-step; a phase of N tasks x "
          f"{E} x {T}:")
    print("  tasks  cores  actors  seconds  speed-up over 1 core  efficiency")
    for N in (40, 400):
        one = N * E * T / rate  # the local sampler on one core
        for cores in (1, 8, 32, 128):
            actors, seconds = project(cores, N, E * T, rate, fixed, per_actor, per_step)
            print(f"  {N:5d}  {cores:5d}  {actors:6d}  {seconds:7.3f}  {one / seconds:20.1f}  "
                  f"{one / seconds / cores:10.2f}")


if __name__ == "__main__":
    main()
