"""2D point navigation (Finn et al., 2017, Sec. 5.3, as in their reference code).

The point starts at (0, 0); each task is a goal ``U[-0.5, 0.5]^2``. The action is clipped to
``[-0.1, 0.1]^2`` and added to the position; the reward is minus the Euclidean distance to the
goal after the move; the episode terminates when both coordinates are within 0.01 of the goal.
Observation: the position (2). Horizon 100 (the paper's and the reference code's).

``Navigation2D`` takes the action in those units, as the public PyTorch reference does;
``Navigation2DNormalized`` takes it in ``[-1, 1]^2`` and scales it by 0.1, as Finn et al.'s own
code did (rllab's ``normalize`` wrapper around the same env), so a unit Gaussian's noise is a
tenth of a step there instead of clipped to a full step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from PIL import Image, ImageDraw

from metarl.envs.tasks import (
    RNG,
    GoalTask,
    TaskEnv,
    as_rng,
    check_actions,
    check_render_mode,
    sample_goal_tasks,
    task_array,
)
from metarl.simulator import BatchedSim
from metarl.video import Window

MAX_STEP = 0.1
SUCCESS_TOL = 0.01
NAME = "Navigation2D"


def navigation_step(
    position: np.ndarray, action: np.ndarray, goal: np.ndarray, action_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``position, action, goal [B, 2] -> (position [B, 2], reward [B], terminated [B])``; the
    move is ``action * action_scale`` clipped to the largest step."""
    position = position + np.clip(action * action_scale, -MAX_STEP, MAX_STEP)
    offset = position - goal
    reward = -np.sqrt(np.square(offset).sum(1))
    terminated = (np.abs(offset) < SUCCESS_TOL).all(1)
    return position, reward, terminated


def sample_tasks(n: int, rng: RNG = None) -> list[GoalTask]:
    return sample_goal_tasks(n, as_rng(rng))


class Navigation2DEnv(TaskEnv):
    """One point; its task (goal) is kept as :class:`~metarl.envs.tasks.TaskEnv` says.

    ``render_mode="rgb_array"`` draws the square [-1, 1]^2: the goal (green), the point (blue)
    and its path since the reset; ``"human"`` shows the same in a window.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array", "human"], "render_fps": 10}
    name = NAME
    action_scale: ClassVar[float] = 1.0
    """The move is the action times this, clipped to [-0.1, 0.1]^2."""
    task_type = GoalTask
    task_bounds = ((-0.5, -0.5), (0.5, 0.5))
    default_task = GoalTask((0.25, 0.25))

    def __init__(self, task: GoalTask | None = None, render_mode: str | None = None,
                 width: int = 256, height: int = 256) -> None:
        check_render_mode(render_mode, self.metadata, self.name)
        self.render_mode, self.width, self.height = render_mode, width, height
        bound = MAX_STEP / self.action_scale
        self.action_space = spaces.Box(-bound, bound, (2,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self._position = np.zeros(2)
        self._path = [self._position]
        self._window: Window | None = None
        super().__init__(task)

    @classmethod
    def make_batched(cls, n: int, nthread: int = 0, name: str | None = None
                     ) -> Navigation2DBatchedSim:
        """The lockstep simulator of ``n`` points (numpy; ``nthread`` is unused)."""
        return Navigation2DBatchedSim(n, name=name or cls.name, action_scale=cls.action_scale)

    def sample_tasks(self, n: int, rng: RNG = None) -> list[GoalTask]:
        return sample_tasks(n, rng)

    def _apply(self, task: GoalTask) -> None:
        super()._apply(task)
        self._goal = task.array()[None]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._reset_task(seed, options)
        self._position = np.zeros(2)
        self._path = [self._position]
        return self._position.copy(), {"task": self.task}

    def step(self, action):
        a = check_actions(action, (2,), self.name)[None]
        pos, reward, terminated = navigation_step(self._position[None], a, self._goal,
                                                  self.action_scale)
        self._position = pos[0]
        self._path.append(self._position)
        return pos[0].copy(), float(reward[0]), bool(terminated[0]), False, {"task": self.task}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        frame = self._draw()
        if self.render_mode == "human":
            if self._window is None:
                self._window = Window(self.name, self.width, self.height)
            self._window.show(frame)
            return None
        return frame

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None

    def _draw(self) -> np.ndarray:
        w, h = self.width, self.height

        def pixel(p: np.ndarray) -> tuple[float, float]:  # [-1, 1]^2, y up
            return ((p[0] + 1) / 2 * (w - 1), (1 - p[1]) / 2 * (h - 1))

        image = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(image)
        draw.line([pixel(np.array(c)) for c in ((-1, 0), (1, 0))], fill=(220, 220, 220))
        draw.line([pixel(np.array(c)) for c in ((0, -1), (0, 1))], fill=(220, 220, 220))
        r = max(2, w // 64)
        gx, gy = pixel(self._goal[0])
        draw.ellipse((gx - 2 * r, gy - 2 * r, gx + 2 * r, gy + 2 * r), fill=(40, 170, 60))
        if len(self._path) > 1:
            draw.line([pixel(p) for p in self._path], fill=(120, 150, 220), width=max(1, r // 2))
        x, y = pixel(self._position)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(30, 60, 200))
        return np.asarray(image)


class Navigation2DNormalizedEnv(Navigation2DEnv):
    """The same task with actions in ``[-1, 1]^2``, scaled by 0.1 (Finn et al.'s code: rllab's
    ``normalize``)."""

    name = "Navigation2DNormalized"
    action_scale: ClassVar[float] = MAX_STEP


class Navigation2DBatchedSim(BatchedSim):
    """``n`` points in numpy; the start is deterministic, so seeds are accepted and unused."""

    obs_dim = 2
    act_dim = 2
    task_type = GoalTask

    def __init__(self, n: int, name: str = NAME, action_scale: float = 1.0) -> None:
        if n < 1:
            raise ValueError(f"{name}: need at least one instance, got n={n}")
        self.n, self.name, self.action_scale = n, name, action_scale
        self._goal: np.ndarray | None = None
        self._position = np.zeros((n, 2))

    def reset(self, tasks: Sequence[Any], seeds: Sequence[int | None] | None = None,
              ids: Sequence[int] | None = None) -> np.ndarray:
        index = self._reset_ids(tasks, seeds, ids)
        self.set_tasks(tasks, ids)
        self._position[index] = 0.0
        return self._position[index].copy()

    def set_tasks(self, tasks: Sequence[Any], ids: Sequence[int] | None = None) -> None:
        goals = task_array(tasks, GoalTask, self.name, Navigation2DEnv.task_bounds)
        if self._goal is None:
            if ids is not None:
                raise ValueError(f"{self.name}: the first reset starts every instance")
            self._goal = goals
        self._goal[self._reset_ids(tasks, None, ids)] = goals

    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._goal is None:
            raise RuntimeError(f"{self.name}: call reset(tasks, seeds) before step")
        a = check_actions(actions, (self.n, 2), self.name)
        pos, reward, terminated = navigation_step(self._position, a, self._goal,
                                                  self.action_scale)
        # Terminated points stay where they stopped (their later steps are masked anyway).
        self._position = pos if active is None else np.where(active[:, None], pos, self._position)
        return self._position.copy(), reward, terminated

    def load_into(self, i: int, env: Navigation2DEnv) -> None:
        if self._goal is None:
            raise RuntimeError(f"{self.name}: call reset(tasks, seeds) before load_into")
        env.set_task(GoalTask((float(self._goal[i, 0]), float(self._goal[i, 1]))))
        env._position = self._position[i].copy()
        env._path = [env._position]
