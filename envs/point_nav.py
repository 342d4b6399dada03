"""2D point navigation (Finn et al., 2017, Sec. 5.3, as in their reference code).

The point starts at (0, 0); each task is a goal ``U[-0.5, 0.5]^2``. The action is clipped to
``[-0.1, 0.1]^2`` and added to the position; the reward is minus the Euclidean distance to the
goal after the move; the episode terminates when both coordinates are within 0.01 of the goal.
Observation: the position (2). Horizon 100 (the paper's and the reference code's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from metarl.envs.tasks import (
    RNG,
    GoalTask,
    as_rng,
    check_actions,
    check_task,
    sample_goal_tasks,
    task_array,
)
from metarl.simulator import BatchedSim

MAX_STEP = 0.1
SUCCESS_TOL = 0.01
NAME = "Navigation2D"


def navigation_step(
    position: np.ndarray, action: np.ndarray, goal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``position, action, goal [B, 2] -> (position [B, 2], reward [B], terminated [B])``."""
    position = position + np.clip(action, -MAX_STEP, MAX_STEP)
    offset = position - goal
    reward = -np.sqrt(np.square(offset).sum(1))
    terminated = (np.abs(offset) < SUCCESS_TOL).all(1)
    return position, reward, terminated


def sample_tasks(n: int, rng: RNG = None) -> list[GoalTask]:
    return sample_goal_tasks(n, as_rng(rng))


class Navigation2DEnv(gymnasium.Env):
    """One point; the task (goal) is set by ``set_task`` or ``reset(options={"task": ...})``."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, task: GoalTask | None = None, render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"{NAME}: rendering is not supported (render_mode=None)")
        self.action_space = spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.set_task(GoalTask((0.25, 0.25)) if task is None else task)
        self._position = np.zeros(2)

    @classmethod
    def make_batched(cls, n: int, nthread: int = 0, name: str = NAME) -> Navigation2DBatchedSim:
        """The lockstep simulator of ``n`` points (numpy; ``nthread`` is unused)."""
        return Navigation2DBatchedSim(n, name=name)

    def sample_tasks(self, n: int, rng: RNG = None) -> list[GoalTask]:
        return sample_tasks(n, rng)

    def set_task(self, task: GoalTask) -> None:
        self.task = check_task(task, GoalTask, NAME)
        self._goal = task.array()[None]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._position = np.zeros(2)
        return self._position.copy(), {"task": self.task}

    def step(self, action):
        a = check_actions(action, (2,), NAME)[None]
        pos, reward, terminated = navigation_step(self._position[None], a, self._goal)
        self._position = pos[0]
        return pos[0].copy(), float(reward[0]), bool(terminated[0]), False, {"task": self.task}


class Navigation2DBatchedSim(BatchedSim):
    """``n`` points in numpy; the start is deterministic, so seeds are accepted and unused."""

    obs_dim = 2
    act_dim = 2
    task_type = GoalTask

    def __init__(self, n: int, name: str = NAME) -> None:
        if n < 1:
            raise ValueError(f"{name}: need at least one instance, got n={n}")
        self.n, self.name = n, name
        self._goal: np.ndarray | None = None
        self._position = np.zeros((n, 2))

    def reset(self, tasks: Sequence[Any], seeds: Sequence[int] | None = None) -> np.ndarray:
        if len(tasks) != self.n:
            raise ValueError(f"{self.name}: got {len(tasks)} tasks for {self.n} instances")
        self._goal = task_array(tasks, GoalTask, self.name)
        self._position = np.zeros((self.n, 2))
        return self._position.copy()

    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._goal is None:
            raise RuntimeError(f"{self.name}: call reset(tasks, seeds) before step")
        a = check_actions(actions, (self.n, 2), self.name)
        pos, reward, terminated = navigation_step(self._position, a, self._goal)
        # Terminated points stay where they stopped (their later steps are masked anyway).
        self._position = pos if active is None else np.where(active[:, None], pos, self._position)
        return self._position.copy(), reward, terminated
