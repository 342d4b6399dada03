"""stable-baselines3 PPO on the batched simulators (:class:`metarl.envs.sb3.SB3VecEnv`) against
SB3's own ``DummyVecEnv`` (a Python loop) and ``SubprocVecEnv`` (a process per env) of the same
monitored Gymnasium envs, side by side in one run (medians of interleaved repeats):
rollout collection in env-steps/s (``collect_rollouts``: the policy's forward pass, action
sampling, the env step and the rollout buffer) and the whole PPO training (rollouts + updates),
per wall second and per CPU second of every process involved (on a machine shared with other
jobs the CPU figures are the steadier ones).

    python benchmarks/bench_sb3.py [--env metarl/HalfCheetahVel-v0] [--envs 16 64]
        [--repeats 3] [--n-steps 64] [--iterations 2] [--nthread 0] [--subproc-max 16]

Torch runs on one thread (as the RL commands do); the batched env's MuJoCo pool on all cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs.sb3 import SB3VecEnv
from metarl.memory import tune_allocator

WHAT = {"rollout, wall": "rollout collection (policy forward included), env-steps/s",
        "rollout, CPU": "rollout collection, env-steps per CPU second (all processes)",
        "training, wall": "whole PPO training (rollouts + updates), env-steps/s",
        "training, CPU": "whole PPO training, env-steps per CPU second"}


def _gym_env(env_id: str) -> Callable[[], gym.Env]:
    return lambda: Monitor(gym.make(env_id))


def make(kind: str, env_id: str, n: int, nthread: int = 0) -> VecEnv:
    if kind == "batched":
        return SB3VecEnv(env_id, n, nthread=nthread)
    if kind == "dummy":
        return DummyVecEnv([_gym_env(env_id) for _ in range(n)])
    return SubprocVecEnv([_gym_env(env_id) for _ in range(n)])


def cpu_seconds(venv: VecEnv) -> float:
    """CPU time of this process (all its threads) and of the env's worker processes: what the
    work costs whatever else the machine runs."""
    total = time.process_time()
    for process in getattr(venv, "processes", []):
        with open(f"/proc/{process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Timed:
    """A PPO model whose ``learn`` is split into rollout collection and updates, in wall time
    and in CPU time."""

    def __init__(self, venv: VecEnv, n_steps: int) -> None:
        self.venv = venv
        self.model = PPO("MlpPolicy", venv, n_steps=n_steps, seed=0, device="cpu")
        self.train_wall = self.train_cpu = 0.0
        train = self.model.train

        def timed_train() -> None:
            wall, cpu = time.perf_counter(), cpu_seconds(venv)
            train()
            self.train_wall += time.perf_counter() - wall
            self.train_cpu += cpu_seconds(venv) - cpu

        self.model.train = timed_train

    def learn(self, iterations: int) -> dict[str, float]:
        """Env-steps per wall and per CPU second over ``iterations`` PPO iterations, of the
        rollouts and of the whole training."""
        model = self.model
        self.train_wall = self.train_cpu = 0.0
        before, wall, cpu = model.num_timesteps, time.perf_counter(), cpu_seconds(self.venv)
        model.learn(iterations * model.n_steps * model.n_envs, reset_num_timesteps=False)
        wall, cpu = time.perf_counter() - wall, cpu_seconds(self.venv) - cpu
        done = model.num_timesteps - before
        return {"rollout, wall": done / (wall - self.train_wall),
                "rollout, CPU": done / (cpu - self.train_cpu),
                "training, wall": done / wall, "training, CPU": done / cpu}


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="metarl/HalfCheetahVel-v0")
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-steps", type=int, default=64, help="PPO's steps per env a rollout")
    parser.add_argument("--iterations", type=int, default=2, help="PPO iterations a repeat")
    parser.add_argument("--nthread", type=int, default=0,
                        help="the batched env's MuJoCo threads (0: all cores)")
    parser.add_argument("--subproc-max", type=int, default=16,
                        help="largest SubprocVecEnv (each process holds torch and MuJoCo)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.env}: SB3 PPO (MlpPolicy 64x64, {args.n_steps} steps per env a rollout, "
          f"10 epochs of minibatches of 64; batched env on {args.nthread or 'all'} MuJoCo "
          f"threads), medians of {args.repeats} interleaved repeats")
    for n in args.envs:
        kinds = ["batched", "dummy"] + ["subproc"] * (n <= args.subproc_max)
        models = {k: Timed(make(k, args.env, n, args.nthread), args.n_steps) for k in kinds}
        for m in models.values():
            m.learn(1)  # warm-up
        rates: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeats):
            for k, m in models.items():
                for what, rate in m.learn(args.iterations).items():
                    rates.setdefault(what, {}).setdefault(k, []).append(rate)
        for what, by_kind in rates.items():
            med = {k: statistics.median(v) for k, v in by_kind.items()}
            print(f"{n} envs, {WHAT[what]}: "
                  + ", ".join(f"{k} {v:,.0f}" for k, v in med.items()))
            print(f"  ratio batched/dummy = {med['batched'] / med['dummy']:.2f}"
                  + (f";  ratio batched/subproc = {med['batched'] / med['subproc']:.2f}"
                     if "subproc" in med else ""))
        for m in models.values():
            m.model.env.close()


if __name__ == "__main__":
    main()
