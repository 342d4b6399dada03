"""The oracle baseline of Finn et al. (2017), Figure 5: a policy trained with the task known.

For each held-out task (the tasks ``metarl-evaluate`` draws with the same seed), a fresh
stable-baselines3 policy (PPO, or sb3-contrib's TRPO) is trained on that task alone for a
budget of env-steps, on the batched simulator (:class:`~metarl.envs.sb3.SB3VecEnv`), then
evaluated on it; its mean return is the line that adaptation from a meta-learned
initialisation is measured against. (Finn et al.'s oracle receives the task's parameters as
input; one policy per task knows its task too.) The policy has the preset's architecture,
so ``metarl.sb3_io.from_sb3`` turns a saved oracle into our params.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sb3_contrib import TRPO
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from metarl.algos.meta_rl import Problem, torch_threads
from metarl.checkpoint import write_atomically
from metarl.config import (
    RLConfig,
    check,
    check_nonnegative_int,
    check_positive,
    check_positive_ints,
)
from metarl.envs import horizon as default_horizon
from metarl.envs.sb3 import SB3VecEnv
from metarl.errors import CheckpointError, ConfigError
from metarl.models import ACTIVATIONS

FORMAT = "metarl-oracle-v1"
ALGORITHMS: dict[str, type[OnPolicyAlgorithm]] = {"ppo": PPO, "trpo": TRPO}


@dataclass(frozen=True)
class Oracle:
    """How each held-out task's oracle policy is trained and evaluated (SB3's defaults
    otherwise: GAE lambda 0.95, PPO's 10 epochs of minibatches of 64, clip 0.2; TRPO's max KL
    0.01, 10 critic updates)."""

    algo: Literal["ppo", "trpo"] = "ppo"
    """ppo (stable-baselines3) or trpo (sb3-contrib)."""
    env_steps: int = 100_000
    """Budget per task: env-steps of training (whole rollouts of n-envs x n-steps)."""
    n_envs: int = 16
    """Sub-environments of the task stepped in lockstep."""
    n_steps: int = 128
    """Steps per sub-environment in each rollout (an iteration: n-envs x n-steps env-steps)."""
    learning_rate: float = 3e-4
    """PPO's learning rate; TRPO's critic's (its policy step is set by the KL bound)."""
    batch_size: int = 64
    """Minibatch size of PPO's epochs and TRPO's critic updates."""
    log_std_init: float | None = None
    """Initial log standard deviation of the Gaussian policy (default: the log of half the
    action range, std 1 on [-1, 1] as SB3 sets it, 0.1 on navigation's [-0.1, 0.1])."""
    eval_episodes: int = 20
    """Episodes each trained policy is evaluated on (with sampled actions, as metarl-evaluate
    samples the adapted policies'; the deterministic mean's return is saved too)."""
    train_seed: int = 0
    """Seed of each task's policy initialisation and training rollouts (plus the task index)."""

    def __post_init__(self) -> None:
        check(self.algo in ALGORITHMS, f"--algo must be one of {sorted(ALGORITHMS)}, got "
              f"{self.algo!r}")
        check_positive_ints(self, ("env_steps", "n_envs", "n_steps", "batch_size",
                                   "eval_episodes"))
        check_nonnegative_int("train_seed", self.train_seed)
        check(self.n_envs * self.n_steps >= 2, "--n-envs x --n-steps must be at least 2 (a "
              "rollout of one step has no advantage to normalise)")
        check(self.batch_size <= self.n_envs * self.n_steps, f"--batch-size {self.batch_size} "
              f"exceeds a rollout (--n-envs x --n-steps = {self.n_envs * self.n_steps})")
        check_positive("learning_rate", self.learning_rate)
        check(self.log_std_init is None or math.isfinite(self.log_std_init),
              f"--log-std-init must be finite, got {self.log_std_init!r}")

    @property
    def iterations(self) -> int:
        """Rollout-and-update iterations the budget buys (SB3 finishes the last rollout)."""
        return -(-self.env_steps // (self.n_envs * self.n_steps))

    def label(self) -> str:
        steps = self.iterations * self.n_envs * self.n_steps  # what the budget trains on
        return f"oracle ({self.algo.upper()}, {steps:,} env-steps per task)"


def held_out_tasks(rl: RLConfig, num_tasks: int, seed: int) -> list:
    """The held-out tasks ``metarl-evaluate --seed seed --tasks num_tasks`` adapts to."""
    return Problem.build(rl, num_tasks=1, episodes=1).sample_tasks(num_tasks, seed)


def make_model(oracle: Oracle, rl: RLConfig, env: SB3VecEnv, seed: int) -> OnPolicyAlgorithm:
    """A fresh SB3 model with the preset's policy architecture (its value network alike)."""
    hidden = list(rl.hidden)
    log_std = oracle.log_std_init
    if log_std is None:  # SB3 expects actions in [-1, 1]; std 1 on [-0.1, 0.1] is noise only
        space = env.action_space
        log_std = float(np.log((space.high - space.low).mean() / 2))
    kwargs: dict[str, Any] = dict(
        n_steps=oracle.n_steps, batch_size=oracle.batch_size, gamma=rl.gamma,
        learning_rate=oracle.learning_rate, seed=seed, device="cpu",
        policy_kwargs=dict(net_arch=dict(pi=hidden, vf=hidden),
                           activation_fn=ACTIVATIONS[rl.nonlinearity],
                           log_std_init=log_std))
    return ALGORITHMS[oracle.algo]("MlpPolicy", env, **kwargs)


@dataclass(frozen=True)
class TaskResult:
    """One held-out task's oracle: its mean evaluation return, with sampled actions and with
    the mean action, the env-steps it trained on and the wall time it took."""

    task: list[float]
    returns: float
    returns_deterministic: float
    env_steps: int
    seconds: float


def train_task(oracle: Oracle, rl: RLConfig, task: Any, seed: int, nthread: int = 0
               ) -> tuple[OnPolicyAlgorithm, TaskResult]:
    """Train and evaluate the oracle of one task."""
    horizon = rl.horizon or default_horizon(rl.env_id)
    t0 = time.perf_counter()
    env = SB3VecEnv(rl.env_id, oracle.n_envs, tasks=task, max_episode_steps=horizon,
                    nthread=nthread)
    env.seed(seed)
    model = make_model(oracle, rl, env, seed)
    model.learn(oracle.env_steps)
    seconds = time.perf_counter() - t0
    evaluation = SB3VecEnv(rl.env_id, oracle.eval_episodes, tasks=task,
                           max_episode_steps=horizon, nthread=nthread)
    means = []
    for deterministic in (False, True):
        evaluation.seed(seed + 1)
        returns, _ = evaluate_policy(model, evaluation, oracle.eval_episodes,
                                     deterministic=deterministic, return_episode_rewards=True)
        means.append(float(np.mean(returns)))
    env.close()
    evaluation.close()
    return model, TaskResult(task.array().tolist(), means[0], means[1], model.num_timesteps,
                             seconds)


def start(oracle: Oracle, rl: RLConfig, preset: str, tasks: Sequence[Any], seed: int,
          out: Path, resume: bool = False) -> dict[str, Any]:
    """What an oracle run in ``out`` records, with the results it already holds (with
    ``resume``: the tasks it finished, checked to be these; else none, and ``out`` must not
    hold a run)."""
    header = {"format": FORMAT, "preset": preset, "env_id": rl.env_id,
              "horizon": rl.horizon or default_horizon(rl.env_id), "hidden": list(rl.hidden),
              "nonlinearity": rl.nonlinearity, "gamma": rl.gamma, "seed": seed,
              "oracle": asdict(oracle), "label": oracle.label()}
    results: list[dict[str, Any]] = []
    path = out / "returns.json"
    if path.exists():
        if not resume:
            raise ConfigError(f"{out} already holds an oracle run; pass --resume to continue "
                              "it or --out DIR for another")
        saved = read(path)
        different = sorted(k for k in header if saved.get(k) != header[k])
        if different:
            raise ConfigError(f"cannot resume {out}: {', '.join(different)} differ from the "
                              "saved run; use the same options or a new --out")
        results = saved["results"][: len(tasks)]
        if [r["task"] for r in results] != [t.array().tolist() for t in tasks[: len(results)]]:
            raise ConfigError(f"cannot resume {out}: its tasks are not these held-out tasks; "
                              "use a new --out")
    elif resume:
        raise ConfigError(f"cannot resume: {out} holds no oracle run (no returns.json)")
    return {**header, "num_tasks": len(tasks), "results": results}


def run(oracle: Oracle, rl: RLConfig, state: dict[str, Any], tasks: Sequence[Any], out: Path,
        save_models: bool = True, nthread: int = 0,
        progress: Callable[[int, TaskResult], None] | None = None) -> dict[str, Any]:
    """Train the oracle of every task that ``state`` (from :func:`start`) lacks, in turn,
    writing ``out/returns.json`` after each (and ``out/task<i>.zip``)."""
    results = list(state["results"])
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(rl.torch_threads):
        for i in range(len(results), len(tasks)):
            model, result = train_task(oracle, rl, tasks[i], oracle.train_seed + i, nthread)
            if save_models:
                model.save(model_path(out, i))
            results.append(asdict(result))
            _write_json(out / "returns.json", {**state, "results": results})
            if progress is not None:
                progress(i, result)
    return {**state, "results": results}


def model_path(out: str | Path, task: int) -> Path:
    """Where an oracle run in ``out`` saves the policy of held-out task ``task``."""
    return Path(out) / f"task{task:02d}.zip"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Written atomically: an interrupted run keeps the tasks it finished."""
    write_atomically(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def read(path: str | Path) -> dict[str, Any]:
    """An oracle run's ``returns.json`` (the file or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "returns.json"
    if not path.is_file():
        raise CheckpointError(f"no oracle returns at {path}; run metarl-oracle PRESET first and "
                              "pass its folder or returns.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not an oracle's returns.json ({type(e).__name__}); "
                              "pass the file metarl-oracle wrote") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an oracle's returns.json (expected format "
                              f"{FORMAT}); pass the file metarl-oracle wrote")
    return data


def oracle_returns(path: str | Path, rl: RLConfig, num_tasks: int, seed: int
                   ) -> tuple[str, torch.Tensor]:
    """The label and per-task returns ``[k]`` of an oracle run, checked to be of the first
    ``k`` of the held-out tasks that ``metarl-evaluate --tasks num_tasks --seed seed`` adapts
    runs of ``rl`` to, at their horizon."""
    data = read(path)
    horizon = rl.horizon or default_horizon(rl.env_id)
    if data["env_id"] != rl.env_id or data["horizon"] != horizon:
        raise ConfigError(f"the oracle in {path} was trained on {data['env_id']} (horizon "
                          f"{data['horizon']}), the runs on {rl.env_id} (horizon {horizon}); "
                          "run metarl-oracle with the runs' preset")
    tasks = held_out_tasks(rl, num_tasks, seed)
    results = data["results"][:num_tasks]
    if [r["task"] for r in results] != [t.array().tolist() for t in tasks[: len(results)]]:
        raise ConfigError(f"the oracle in {path} was trained on other tasks than these held-out "
                          f"ones (its seed {data['seed']}); run metarl-oracle with the same "
                          "--seed as metarl-evaluate")
    if len(results) < 2:
        raise ConfigError(f"the oracle in {path} has {len(results)} finished task(s); an "
                          "interval needs 2 (continue it with metarl-oracle ... --resume)")
    label = data["label"]
    if len(results) < num_tasks:
        label = f"{label[:-1]}, first {len(results)} of {num_tasks} tasks)"
    return label, torch.tensor([r["returns"] for r in results], dtype=torch.float64)
