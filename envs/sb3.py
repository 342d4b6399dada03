"""A task family's batched simulator as a stable-baselines3 ``VecEnv``.

``SB3VecEnv("metarl/HalfCheetahVel-v0", 64)`` steps 64 sub-environments in lockstep on the
family's batched simulator (:class:`~metarl.envs.vector.TaskVectorEnv`, ``mujoco.batch`` on
native threads for the MuJoCo families), so SB3's algorithms collect rollouts at the batched
simulator's speed instead of a Python loop of Gymnasium envs (``DummyVecEnv``) or a process
per env (``SubprocVecEnv``). For the same seeds, tasks and actions it gives exactly what
``DummyVecEnv([lambda: Monitor(gymnasium.make(env_id)), ...])`` gives: observations,
rewards (float32, as ``DummyVecEnv``), dones, ``terminal_observation``,
``TimeLimit.truncated`` and the ``Monitor``'s ``episode`` statistics (``r``, ``l``, ``t``), so
``evaluate_policy`` and the algorithms' ``ep_rew_mean`` read it as a monitored env.

Tasks, per sub-environment, follow :class:`~metarl.envs.tasks.TaskEnv`: until a task is set,
each seeded reset draws it from the family with that sub-environment's seed; set them with
``env_method("set_task", task, indices=[i])`` (SB3's way to reach a sub-env), ``set_attr("task",
task, indices)``, ``set_options({"task": task})`` before a reset, or ``tasks=[...]`` at
construction; read them with ``get_attr("task")``. ``resample_tasks=True`` draws a new task for
every episode instead (one policy trained on the task distribution).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from metarl.checkpoint import load_checkpoint
from metarl.envs import ENVS
from metarl.envs.tasks import task_rng
from metarl.errors import CheckpointError
from metarl.sb3_io import to_sb3


class SB3VecEnv(VecEnv):
    """``num_envs`` sub-environments of the family registered as ``env_id``.

    ``tasks``: one task for all, or one each (default: drawn from the seeds, as above).
    ``resample_tasks``: every episode (reset or autoreset) draws a new task from the family.
    ``max_episode_steps``: the horizon (default: the id's). ``nthread``: MuJoCo's thread pool
    (0: all cores). ``render_mode``: ``"rgb_array"`` renders every sub-environment
    (``get_images``).
    """

    def __init__(self, env_id: str, num_envs: int, *, tasks: Any = None,
                 resample_tasks: bool = False, max_episode_steps: int | None = None,
                 nthread: int = 0, render_mode: str | None = None) -> None:
        if env_id not in ENVS:
            raise ValueError(f"unknown env id {env_id!r}; the registered ids are "
                             f"{', '.join(ENVS)}")
        # Disabled autoreset: this class restarts ended sub-envs itself, so that a sub-env's
        # next task can be chosen before its next episode starts.
        self._vec = gymnasium.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
            autoreset_mode=AutoresetMode.DISABLED, nthread=nthread, render_mode=render_mode,
            **({} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}))
        # One env of the family: its default task, sample_tasks and the task checks.
        self._family = gymnasium.make(env_id).unwrapped
        self._name, self._started = env_id, False
        self._tasks = [self._family.task] * num_envs
        self._task_set = np.zeros(num_envs, dtype=bool)
        self.resample_tasks = resample_tasks
        self._task_rng = np.random.default_rng()
        if tasks is not None:
            self._set_tasks(tasks, range(num_envs))
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._t_start = time.time()
        self._actions: np.ndarray | None = None
        super().__init__(num_envs, self._vec.single_observation_space,
                         self._vec.single_action_space)

    # --- tasks ---------------------------------------------------------------------------

    def _set_tasks(self, tasks: Any, indices: VecEnvIndices) -> None:
        ids = list(self._get_indices(indices))
        tasks = list(tasks) if isinstance(tasks, (list, tuple)) else [tasks] * len(ids)
        if len(tasks) != len(ids):
            raise ValueError(f"{self._name}: got {len(tasks)} tasks for {len(ids)} sub-envs")
        for i, task in zip(ids, tasks):
            self._tasks[i] = self._family.check(task)
            self._task_set[i] = True
        if self._started:  # the running episodes' next rewards use them, as with set_task
            self._vec.set_attr("task", list(self._tasks))

    def sample_tasks(self, n: int, rng: Any = None) -> list:
        """``n`` tasks of the family (``rng``: a numpy Generator or seed)."""
        return self._family.sample_tasks(n, rng)

    # --- SB3's VecEnv --------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        seeds, n = list(self._seeds), self.num_envs
        if self.resample_tasks:
            if seeds[0] is not None:
                self._task_rng = task_rng(seeds[0])
            self._tasks = self._family.sample_tasks(n, self._task_rng)
        for i in range(n):
            if "task" in self._options[i]:
                self._set_tasks(self._options[i]["task"], [i])
            elif not self.resample_tasks and seeds[i] is not None and not self._task_set[i]:
                self._tasks[i] = self._family.sample_tasks(1, task_rng(seeds[i]))[0]
        obs, _ = self._vec.reset(seed=seeds, options={"tasks": list(self._tasks)})
        self.reset_infos = [{"task": t} for t in self._tasks]
        self._returns[:], self._lengths[:], self._started = 0.0, 0, True
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if not self._started or self._actions is None:
            raise RuntimeError(f"{self._name}: call reset() and step_async() before step_wait()")
        obs, rewards, terminated, truncated, _ = self._vec.step(self._actions)
        self._actions = None
        self._returns += rewards
        self._lengths += 1
        dones = terminated | truncated
        infos = [{"task": t, "TimeLimit.truncated": False} for t in self._tasks]
        ended = np.flatnonzero(dones)
        if len(ended):
            seconds = round(time.time() - self._t_start, 6)
            for i in ended:
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["episode"] = {"r": round(float(self._returns[i]), 6),
                                       "l": int(self._lengths[i]), "t": seconds}
            self._returns[ended], self._lengths[ended] = 0.0, 0
            if self.resample_tasks:
                for i, task in zip(ended, self._family.sample_tasks(len(ended),
                                                                    self._task_rng)):
                    self._tasks[i] = task
            # Restart them with their tasks, continuing their random streams (as env.reset()).
            obs, _ = self._vec.reset(options={"reset_mask": dones, "tasks": list(self._tasks)})
            for i in ended:
                self.reset_infos[i] = {"task": self._tasks[i]}
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self._vec.close()
        self._family.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        ids = list(self._get_indices(indices))
        if attr_name == "task":
            return [self._tasks[i] for i in ids]
        if attr_name == "render_mode":
            return [self._vec.render_mode] * len(ids)
        values = self._vec.get_attr(attr_name) if self._started else (
            (getattr(self._family, attr_name),) * self.num_envs)
        return [values[i] for i in ids]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Only ``"task"``: the same task for each of ``indices``."""
        if attr_name != "task":
            raise AttributeError(f"{self._name}: only 'task' can be set on the sub-envs, got "
                                 f"{attr_name!r}")
        ids = list(self._get_indices(indices))
        self._set_tasks([value] * len(ids), ids)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """``set_task(task)`` sets the task of each of ``indices``; other methods are called on
        the family's env set to each sub-env's state and task (e.g. ``render``)."""
        ids = list(self._get_indices(indices))
        if method_name == "set_task":
            task = method_args[0] if method_args else method_kwargs["task"]
            self._set_tasks([task] * len(ids), ids)
            return [None] * len(ids)
        if method_name == "sample_tasks":
            return [self.sample_tasks(*method_args, **method_kwargs) for _ in ids]
        results = self._vec.call(method_name, *method_args, **method_kwargs)
        return [results[i] for i in ids]

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        """True for SB3's ``Monitor``, whose episode statistics this env reports itself."""
        return [issubclass(Monitor, wrapper_class)] * len(list(self._get_indices(indices)))

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self._vec.render() if self._started else None
        return list(frames) if frames is not None else [None] * self.num_envs


def run_to_sb3(run: str | Path, **kwargs: Any) -> OnPolicyAlgorithm:
    """The policy of a meta-RL run (its folder or ``checkpoint.pt``) as an SB3 model
    (:func:`metarl.sb3_io.to_sb3`, with the run's env's spaces; ``kwargs`` go there)."""
    checkpoint = load_checkpoint(run)
    rl = checkpoint["config"].get("rl")
    if not isinstance(rl, dict):
        raise CheckpointError(f"{run} is a supervised run; only meta-RL policies export to SB3")
    if rl.get("env_id") not in ENVS:
        raise CheckpointError(f"{run} was trained on {rl.get('env_id')!r}, which is not a "
                              f"registered env id ({', '.join(ENVS)})")
    env = gymnasium.make(rl["env_id"])
    try:
        return to_sb3(checkpoint["state"]["params"], env.observation_space, env.action_space,
                      rl.get("nonlinearity", "tanh"), **kwargs)
    finally:
        env.close()
