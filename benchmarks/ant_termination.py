"""How long a Gaussian policy of zero mean keeps the ant alive, at Gymnasium's timing
(``metarl/AntDirH200-v0``: 5 x 0.01 s per action, 20 Hz) and at rllab's, as Finn et al.'s code
(``metarl/AntDirFinn-v0``: 1 x 0.02 s, 50 Hz); both 200 steps, both end an episode when the
torso leaves [0.2, 1.0] in height. A freshly initialised MAML policy is this policy with
standard deviation 1.

    PYTHONPATH=. .venv/bin/python benchmarks/ant_termination.py [--episodes 200]
        [--oracles runs/AntDirH200-oracle-ppo-500k runs/AntDirFinn-oracle-ppo-500k]

Prints, per timing and standard deviation: the mean episode length, the share ended by the
torso rising above 1.0 (the ant hops out of the healthy range), the simulated seconds the
episode covered, the mean |v_x| at the end of each step, the physics cost per env-step, and
the ``ratio`` of Gymnasium's cost per env-step to rllab's (five physics steps against one).
With ``--oracles``, the same for the SB3 policies that ``metarl-oracle`` trained on each
held-out task of those runs (sampled and mean actions), and how far they carried the torso
in their task's direction.
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np
from stable_baselines3 import PPO

from metarl.algos.oracle import model_path
from metarl.algos.oracle import read as read_oracle
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


def oracle_rollouts(run: str, episodes: int) -> None:
    """Each task's PPO policy in a ``metarl-oracle`` folder, on its task's Gymnasium env."""
    summary = read_oracle(run)
    env = gymnasium.make(summary["env_id"])
    for i, result in enumerate(summary["results"]):
        model = PPO.load(model_path(run, i), device="cpu")
        task = DirectionTask(float(result["task"][0]))
        for deterministic in (False, True):
            length, distance, high = [], [], 0
            for e in range(episodes):
                obs, _ = env.reset(seed=1000 + e, options={"task": task})
                x0, terminated, truncated, steps = env.unwrapped.data.qpos[0], False, False, 0
                while not (terminated or truncated):  # the TimeLimit truncates at the horizon
                    action, _ = model.predict(obs, deterministic=deterministic)
                    obs, _, terminated, truncated, _ = env.step(action)
                    steps += 1
                length.append(steps)
                distance.append(task.direction * (env.unwrapped.data.qpos[0] - x0))
                high += terminated and obs[0] > 1.0
            print(f"oracle {summary['env_id']} direction {task.direction:+.0f} "
                  f"{'mean' if deterministic else 'sampled'} actions: mean length "
                  f"{np.mean(length):.1f}, {np.mean(distance):.2f} m in the task's direction "
                  f"in {np.mean(length) * env.unwrapped.dt:.1f} s, ended by hopping above 1.0: "
                  f"{high}/{episodes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracles", nargs="*", default=[],
                        help="metarl-oracle folders of AntDir ids to roll out as well")
    parser.add_argument("--oracle-episodes", type=int, default=10)
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
    for run in args.oracles:
        oracle_rollouts(run, args.oracle_episodes)


if __name__ == "__main__":
    main()
