"""Env-steps per second of the lockstep sampler against the physics floor and a Gymnasium
``SyncVectorEnv`` driven task by task, measured side by side (interleaved rounds) in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sampler.py [--rounds 5] [--torch-threads 1]

* sampler: ``metarl.sampler.sample`` (closed loop: one vmapped policy forward per step for all
  tasks, Gaussian sampling, the batched simulator with obs/reward/termination, storage).
* floor: the same native stepping open loop: uniform random controls written into the same
  simulator (``mujoco.batch.Batch``, frame skip 5; numpy for 2D navigation), nothing else.
* vector: per task, ``SyncVectorEnv`` of ``episodes`` Gymnasium envs with the task set,
  stepped with the same policy (one forward per step with that task's params).

Every method runs tasks x episodes x horizon env-steps; the medians over rounds are printed,
and the ratios from those medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import mujoco.batch
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv
from torch.func import functional_call

from metarl.envs import make_batched
from metarl.envs.mujoco_family import MujocoBatchedSim
from metarl.memory import tune_allocator
from metarl.params import expand, params_of
from metarl.policies import GaussianMLPPolicy
from metarl.sampler import sample


def floor_fn(sim, T: int, seed: int):
    rng = np.random.default_rng(seed)
    if isinstance(sim, MujocoBatchedSim):
        batch = mujoco.batch.Batch(sim.family.model(), sim.n, 0)
        ctrl, qpos = batch.bind("ctrl"), batch.bind("qpos")
        controls = rng.uniform(-1, 1, (T, sim.n, sim.act_dim))

        def run():
            batch.reset()
            for t in range(T):
                ctrl[:] = controls[t]
                batch.step(nstep=sim.family.frame_skip)
                qpos.copy()
    else:
        controls = rng.uniform(-0.1, 0.1, (T, sim.n, 2))

        def run():
            pos = np.zeros((sim.n, 2))
            for t in range(T):
                pos = pos + np.clip(controls[t], -0.1, 0.1)

    return run


def vector_fn(env_id: str, policy, params, tasks, E: int, T: int, seed: int):
    vec = SyncVectorEnv([lambda: gymnasium.make(env_id) for _ in range(E)])
    gen = torch.Generator().manual_seed(seed)
    task_params = [{k: v[i] for k, v in params.items()} for i in range(len(tasks))]

    def run():
        with torch.no_grad():
            for i, task in enumerate(tasks):
                vec.call("set_task", task)
                obs, _ = vec.reset(seed=seed + i)
                for _ in range(T):
                    out = functional_call(policy, task_params[i], (torch.from_numpy(obs).float(),))
                    actions, _ = policy.distribution.sample(out, gen)
                    obs, *_ = vec.step(actions.double().numpy())

    return run


def bench(env_id: str, n_tasks: int, E: int, T: int, rounds: int) -> None:
    env = gymnasium.make(env_id).unwrapped
    tasks = env.sample_tasks(n_tasks, 0)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(env.observation_space.shape[0], env.action_space.shape[0], (64, 64))
    params = {k: v.detach() for k, v in expand(params_of(policy), n_tasks).items()}
    sim = make_batched(env_id, n_tasks * E)
    steps = n_tasks * E * T
    runs = {
        "sampler": lambda: sample(policy, params, tasks, sim, E, T, seed=1),
        "floor": floor_fn(sim, T, seed=1),
        "vector": vector_fn(env_id, policy, params, tasks, E, T, seed=1),
    }
    for run in runs.values():  # warm-up (allocations, first vmap trace)
        run()
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            rates[name].append(steps / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{env_id}: {n_tasks} tasks x {E} episodes x {T} steps, median of {rounds} rounds")
    for k, v in rates.items():
        spread = ", ".join(f"{x:,.0f}" for x in v)
        print(f"  {k:8s} {med[k]:>12,.0f} env-steps/s   ({spread})")
    print(f"  ratio floor/sampler  = {med['floor'] / med['sampler']:.2f}  (target <= 1.5)")
    print(f"  ratio sampler/vector = {med['sampler'] / med['vector']:.2f}  (target >= 3)")


def main() -> None:
    tune_allocator()  # as the commands do
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="intra-op threads for the policy; 1 leaves the cores to MuJoCo's pool")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    bench("metarl/HalfCheetahVel-v0", 40, 20, 100, args.rounds)
    bench("metarl/Navigation2D-v0", 20, 20, 100, args.rounds)


if __name__ == "__main__":
    main()
