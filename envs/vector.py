"""A task family's batched simulator as a Gymnasium vector environment.

``gym.make_vec("metarl/HalfCheetahVel-v0", num_envs=64,
vectorization_mode="vector_entry_point")`` steps all sub-environments in lockstep on the
family's batched simulator (``mujoco.batch`` on native threads for the MuJoCo families), the
same code the meta-RL sampler uses, instead of a Python loop of Gymnasium envs. It follows
Gymnasium's vector contract and gives exactly what ``make_vec(..., vectorization_mode="sync")``
gives for the same seeds, tasks and actions.

Tasks, per sub-environment, follow :class:`~metarl.envs.tasks.TaskEnv`: until a task is set,
each seeded reset draws it from the family with that sub-environment's seed; set them with
``reset(options={"tasks": [...]})`` (one each), ``reset(options={"task": t})`` (the same for
all, as with the sync vector env) or ``set_attr("task", [...])``; read them with
``get_attr("task")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl.envs.tasks import check_task, task_rng


class TaskVectorEnv(VectorEnv):
    """``num_envs`` sub-environments of the family registered as ``env_id``.

    ``autoreset_mode`` (an ``AutoresetMode`` or its value): ``NEXT_STEP`` (Gymnasium's
    default), ``SAME_STEP`` (what stable-baselines3 expects; the final observation is in
    ``infos["final_obs"]``) or ``DISABLED`` (reset ended sub-environments with
    ``options={"reset_mask": mask}``).
    ``nthread``: MuJoCo's thread pool (0: all cores). Other keyword arguments (``task``,
    ``width``, ``height``) go to the family's Gymnasium env, as ``make_vec`` gives them to
    each sub-environment in the sync mode.
    """

    def __init__(self, env_id: str, num_envs: int, entry_point: str,
                 max_episode_steps: int | None = None, render_mode: str | None = None,
                 autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
                 nthread: int = 0, **env_kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"{env_id}: num_envs must be a positive integer, got {num_envs!r}")
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"{env_id}: unknown autoreset_mode {autoreset_mode!r}; use one of "
                             f"{[m.value for m in AutoresetMode]}") from None
        env_class = load_env_creator(entry_point)
        task = env_kwargs.pop("task", None)
        # One env of the family: spaces, task sampling, and rendering one instance at a time.
        self._env = env_class(render_mode=render_mode, **env_kwargs)
        self.num_envs, self.render_mode = num_envs, render_mode
        self.metadata = {**self._env.metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = self._env.observation_space
        self.single_action_space = self._env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._sim = env_class.make_batched(num_envs, nthread=nthread, name=env_id)
        self._name, self._max_steps = env_id, max_episode_steps
        self._tasks = [self._env.task if task is None else self._check(task)] * num_envs
        self._task_set = np.full(num_envs, task is not None)
        self._seeded = np.zeros(num_envs, dtype=bool)
        self._obs = np.zeros((num_envs, *self.single_observation_space.shape))
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._ended = np.zeros(num_envs, dtype=bool)
        self._started = False

    def _check(self, task: Any) -> Any:
        return check_task(task, self._env.task_type, self._name, self._env.task_bounds)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-environment, or those of ``options["reset_mask"]``; ``seed`` is one
        int (sub-environment ``i`` gets ``seed + i``) or one seed (or None) each."""
        n, options = self.num_envs, dict(options or {})
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"{self._name}: got {len(seeds)} seeds for {n} sub-envs")
        ids = self._reset_ids(options.pop("reset_mask", None))
        tasks = options.get("tasks")
        if tasks is not None and len(tasks) != n:
            raise ValueError(f"{self._name}: options['tasks'] has {len(tasks)} tasks for {n} "
                             "sub-envs; give one each")
        for i in ids:
            if tasks is not None or "task" in options:
                self._tasks[i] = self._check(tasks[i] if tasks is not None else options["task"])
                self._task_set[i] = True
            elif seeds[i] is not None and not self._task_set[i]:
                self._tasks[i] = self._env.sample_tasks(1, task_rng(seeds[i]))[0]
            if seeds[i] is None and not self._seeded[i]:  # Gymnasium seeds from entropy
                seeds[i] = int(np.random.SeedSequence().generate_state(1)[0])
        self._seeded[ids] = True
        partial = None if len(ids) == n else ids
        self._obs[ids] = self._sim.reset([self._tasks[i] for i in ids],
                                         [seeds[i] for i in ids], partial)
        self._elapsed[ids], self._ended[ids], self._started = 0, False, True
        return self._obs.copy(), self._task_infos(ids)

    def _reset_ids(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.arange(self.num_envs)
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_
                and mask.shape == (self.num_envs,) and mask.any()):
            raise ValueError(f"{self._name}: options['reset_mask'] must be a bool array of shape "
                             f"({self.num_envs},) with at least one True, got {mask!r}")
        if not self._started:
            raise ValueError(f"{self._name}: the first reset starts every sub-env; call reset "
                             "without a reset_mask")
        return np.flatnonzero(mask)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError(f"{self._name}: call reset() before step()")
        mode = self.autoreset_mode
        if mode == AutoresetMode.DISABLED and self._ended.any():
            raise RuntimeError(f"{self._name}: sub-envs {list(np.flatnonzero(self._ended))} "
                               "ended; reset them with reset(options={'reset_mask': mask}) "
                               "(autoreset_mode disabled)")
        restart = np.flatnonzero(self._ended) if mode == AutoresetMode.NEXT_STEP else []
        active = None if len(restart) == 0 else ~self._ended
        obs, rewards, terminated = self._sim.step(np.asarray(actions), active)
        self._obs[:] = obs
        rewards, terminated = rewards.astype(np.float64), terminated.copy()
        self._elapsed += 1
        truncated = (np.zeros(self.num_envs, dtype=bool) if self._max_steps is None
                     else self._elapsed >= self._max_steps)
        infos = self._task_infos(np.arange(self.num_envs))
        if len(restart):  # next step: these ended last step; this step only restarts them
            self._restart(restart)
            rewards[restart], terminated[restart], truncated[restart] = 0.0, False, False
        self._ended = terminated | truncated
        if mode == AutoresetMode.SAME_STEP and self._ended.any():
            ended = np.flatnonzero(self._ended)
            for i in ended:
                infos = self._add_info(infos, {"final_obs": self._obs[i].copy(),
                                               "final_info": {"task": self._tasks[i]}}, i)
            self._restart(ended)
        return self._obs.copy(), rewards, terminated, truncated, infos

    def _restart(self, ids: np.ndarray) -> None:
        """Reset sub-envs ``ids`` with their tasks, continuing their random streams."""
        self._obs[ids] = self._sim.reset([self._tasks[i] for i in ids], None, ids)
        self._elapsed[ids] = 0
        self._ended[ids] = False

    def _task_infos(self, ids: np.ndarray) -> dict[str, Any]:
        """``infos["task"]`` of sub-envs ``ids``, laid out as Gymnasium's vector envs do."""
        tasks = np.full(self.num_envs, None, dtype=object)
        mask = np.zeros(self.num_envs, dtype=bool)
        tasks[ids] = [self._tasks[i] for i in ids]
        mask[ids] = True
        return {"task": tasks, "_task": mask}

    def render(self) -> tuple[Any, ...] | None:
        """One frame per sub-environment (``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            return None
        return tuple(self._env_at(i).render() for i in range(self.num_envs))

    def _env_at(self, i: int) -> Any:
        """The family's env set to sub-environment ``i``'s state and task."""
        if self._started:
            self._sim.load_into(i, self._env)
        return self._env

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``name`` of each sub-environment: the method called with the arguments, or the
        attribute."""
        results = []
        for i in range(self.num_envs):
            value = getattr(self._env_at(i), name)
            results.append(value(*args, **kwargs) if callable(value) else value)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        if name == "task":
            return tuple(self._tasks)
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """``set_attr("task", tasks)``: one task each (or one for all), kept across resets, as
        the sync vector env's sub-envs keep theirs."""
        if name != "task":
            raise ValueError(f"{self._name}: only 'task' can be set on the sub-envs, got {name!r}")
        values = list(values) if isinstance(values, (list, tuple)) else [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"{self._name}: got {len(values)} tasks for {self.num_envs} sub-envs")
        self._tasks = [self._check(t) for t in values]
        self._task_set[:] = True
        if self._started:  # the running episodes' next rewards use them, as in the sync env
            self._sim.set_tasks(self._tasks)

    def close_extras(self, **kwargs: Any) -> None:
        self._env.close()
