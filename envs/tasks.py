"""Task objects of the RL task families, the checks every family applies to them, and the
Gymnasium env base class that holds a task.

A task is a small frozen dataclass; ``array()`` gives the numbers the reward function reads,
so a batch of ``B`` instances carries its tasks as one ``[B, k]`` array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np

RNG = np.random.Generator | int | None


@dataclass(frozen=True)
class GoalTask:
    """2D navigation: reach ``goal`` (Finn et al., 2017, Sec. 5.2)."""

    goal: tuple[float, float]

    def array(self) -> np.ndarray:
        return np.asarray(self.goal, dtype=np.float64)

    def describe(self) -> str:
        return f"goal ({self.goal[0]:+.2f}, {self.goal[1]:+.2f})"


@dataclass(frozen=True)
class VelocityTask:
    """Locomotion: run forward at ``velocity`` (m/s along x)."""

    velocity: float

    def array(self) -> np.ndarray:
        return np.asarray([self.velocity], dtype=np.float64)

    def describe(self) -> str:
        return f"target velocity {self.velocity:.2f} m/s"


@dataclass(frozen=True)
class DirectionTask:
    """Locomotion: run along ``direction`` * x, with ``direction`` in {-1, +1}."""

    direction: float

    def __post_init__(self) -> None:
        if self.direction not in (-1.0, 1.0):
            raise ValueError(f"direction must be +1 or -1, got {self.direction}")

    def array(self) -> np.ndarray:
        return np.asarray([self.direction], dtype=np.float64)

    def describe(self) -> str:
        return "run forward (+x)" if self.direction > 0 else "run backward (-x)"


Task = GoalTask | VelocityTask | DirectionTask


def as_rng(rng: RNG) -> np.random.Generator:
    """A ``numpy`` Generator from a Generator or an int seed (``None``: fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def sample_goal_tasks(n: int, rng: RNG, low: float = -0.5, high: float = 0.5) -> list[GoalTask]:
    goals = as_rng(rng).uniform(low, high, size=(n, 2))
    return [GoalTask((float(x), float(y))) for x, y in goals]


def sample_velocity_tasks(n: int, rng: RNG, low: float, high: float) -> list[VelocityTask]:
    return [VelocityTask(float(v)) for v in as_rng(rng).uniform(low, high, size=n)]


def sample_direction_tasks(n: int, rng: RNG) -> list[DirectionTask]:
    return [DirectionTask(float(d)) for d in as_rng(rng).choice([-1.0, 1.0], size=n)]


Bounds = tuple[tuple[float, ...], tuple[float, ...]]
"""The lowest and highest value of each of a family's task numbers (``task.array()``)."""


def check_task(task: Any, task_type: type, env_name: str, bounds: Bounds | None = None) -> Any:
    """``task`` if it belongs to the family (its type, and its numbers within ``bounds``), else
    an error that says what is expected."""
    if not isinstance(task, task_type):
        raise TypeError(
            f"{env_name} expects a {task_type.__name__}, got {type(task).__name__} ({task!r}); "
            f"draw tasks for this family with its sample_tasks(n, rng)"
        )
    if bounds is not None:
        values, (low, high) = task.array(), bounds
        if not (np.isfinite(values).all() and (values >= low).all() and (values <= high).all()):
            span = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(low, high))
            raise ValueError(f"{env_name}: {task!r} is outside the family's tasks (each number "
                             f"in {span}); draw tasks with its sample_tasks(n, rng)")
    return task


def task_array(tasks: Sequence[Any], task_type: type, env_name: str,
               bounds: Bounds | None = None) -> np.ndarray:
    """The tasks' numbers stacked: ``[B, k]``; every task is checked to be of the family."""
    if len(tasks) == 0:
        raise ValueError(f"{env_name}: got an empty list of tasks")
    return np.stack([check_task(t, task_type, env_name, bounds).array() for t in tasks])


def check_actions(actions: Any, shape: tuple[int, ...], env_name: str) -> np.ndarray:
    """``actions`` as float64 of exactly ``shape``; a wrong shape or a NaN/inf is an error.

    A silent broadcast (e.g. ``[B]`` against ``[B, 1]``) or a NaN fed to MuJoCo would give
    wrong rewards without any sign, so both are refused here.
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(
            f"{env_name}: action has shape {a.shape}, expected {shape}; "
            f"pass one action of the env's action_space shape per instance"
        )
    if not np.isfinite(a).all():
        raise ValueError(
            f"{env_name}: action contains NaN or inf; check the policy's outputs "
            f"(e.g. a diverged log_std or mean)"
        )
    return a


def check_render_mode(render_mode: str | None, metadata: dict, env_name: str) -> None:
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"{env_name}: render_mode must be None or one of "
                         f"{metadata['render_modes']}, got {render_mode!r}")


def task_rng(seed: int) -> np.random.Generator:
    """The generator a seeded reset draws its task from: a child of the seed's
    ``SeedSequence``, so the task and the initial state (drawn from ``seed`` itself) are
    independent."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


class TaskEnv(gymnasium.Env):
    """A Gymnasium env of one task family.

    Its task is set with ``set_task(task)``, ``reset(options={"task": task})``, assignment to
    ``env.task`` (what ``VectorEnv.set_attr("task", [...])`` does) or the constructor, and kept
    across resets. Until one is set, every seeded reset draws it from the family with that seed
    (``task_rng(seed)``): a seed picks the task as it picks the initial state.
    """

    name: ClassVar[str]
    task_type: ClassVar[type]
    task_bounds: ClassVar[Bounds]
    default_task: ClassVar[Any]

    def __init__(self, task: Any = None) -> None:
        self._task_is_set = False
        self._apply(self.check(self.default_task if task is None else task))
        self._task_is_set = task is not None

    def sample_tasks(self, n: int, rng: RNG = None) -> list:
        raise NotImplementedError

    @property
    def task(self) -> Any:
        return self._task

    @task.setter
    def task(self, task: Any) -> None:
        self.set_task(task)

    def check(self, task: Any) -> Any:
        """``task`` if it belongs to this family, else an error that says what is expected."""
        return check_task(task, self.task_type, self.name, self.task_bounds)

    def set_task(self, task: Any) -> None:
        self._apply(self.check(task))
        self._task_is_set = True

    def _apply(self, task: Any) -> None:
        """Make ``task`` the current one (subclasses keep the numbers their rewards read)."""
        self._task = task

    def _reset_task(self, seed: int | None, options: dict | None) -> None:
        if options and "task" in options:
            self.set_task(options["task"])
        elif seed is not None and not self._task_is_set:
            self._apply(self.sample_tasks(1, task_rng(seed))[0])

