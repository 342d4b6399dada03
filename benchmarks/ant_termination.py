"""How long a Gaussian policy of zero mean keeps the ant alive, at Gymnasium's timing
(``metarl/AntDirH200-v0``: 5 x 0.01 s per action, 20 Hz) and at rllab's, as Finn et al.'s code
(``metarl/AntDirFinn-v0``: 1 x 0.02 s, 50 Hz); both 200 steps, both end an episode when the
torso leaves [0.2, 1.0] in height. A freshly initialised MAML policy is this policy with
standard deviation 1.

    PYTHONPATH=. .venv/bin/python benchmarks/ant_termination.py [--episodes 200]

Prints, per timing and standard deviation: the mean episode length, the share ended by the
torso rising above 1.0 (the ant hops out of the healthy range), the simulated seconds the
episode covered, the mean |v_x| at the end of each step, the physics cost per env-step, and
the ``ratio`` of Gymnasium's cost per env-step to rllab's (five physics steps against one).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from metarl.envs import horizon, make_batched
from metarl.envs.tasks import DirectionTask

IDS = {"gymnasium 20 Hz": "metarl/AntDirH200-v0", "rllab 50 Hz": "metarl/AntDirFinn-v0"}


def rollout(env_id: str, episodes: int, std: float, seed: int) -> dict[str, float]:
    sim = make_batched(env_id, episodes, nthread=1)
    rng = np.random.default_rng(seed)
    tasks = [DirectionTask(float(d)) for d in rng.choice([-1.0, 1.0], episodes)]
    obs = sim.reset(tasks, [seed * 100_000 + i for i in range(episodes)])
    alive = np.ones(episodes, bool)
    length = np.zeros(episodes)
    high = np.zeros(episodes, bool)
    speed = []
    seconds = 0.0
    for _ in range(horizon(env_id)):
        actions = rng.normal(0.0, std, (episodes, sim.act_dim))
        start = time.perf_counter()
        obs, _, terminated = sim.step(actions, active=alive)
        seconds += time.perf_counter() - start
        speed.append(np.abs(obs[alive, 13]))  # qvel[0], the torso's x velocity
        length += alive
        high |= alive & terminated & (obs[:, 0] > 1.0)
        alive &= ~terminated
        if not alive.any():
            break
    return {"length": length.mean(), "high": high.mean(), "sim_s": length.mean() * sim.dt,
            "speed": float(np.concatenate(speed).mean()), "us": seconds / length.sum() * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for std in (1.0, 0.5):
        cost = {}
        for label, env_id in IDS.items():
            r = rollout(env_id, args.episodes, std, args.seed)
            cost[label] = r["us"]
            print(f"std {std}  {label:16s} mean length {r['length']:6.1f} of "
                  f"{horizon(env_id)}, ended by hopping above 1.0: {r['high']:5.1%}, "
                  f"{r['sim_s']:4.1f} s simulated, |v_x| {r['speed']:.2f} m/s, "
                  f"{r['us']:.0f} us per env-step")
        print(f"std {std}  ratio physics per env-step gymnasium / rllab timing: "
              f"{cost['gymnasium 20 Hz'] / cost['rllab 50 Hz']:.2f}")


if __name__ == "__main__":
    main()
