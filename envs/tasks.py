"""Task objects of the RL task families, and the checks every family applies to them.

A task is a small frozen dataclass; ``array()`` gives the numbers the reward function reads,
so a batch of ``B`` instances carries its tasks as one ``[B, k]`` array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RNG = np.random.Generator | int | None


@dataclass(frozen=True)
class GoalTask:
    """2D navigation: reach ``goal`` (Finn et al., 2017, Sec. 5.2)."""

    goal: tuple[float, float]

    def array(self) -> np.ndarray:
        return np.asarray(self.goal, dtype=np.float64)


@dataclass(frozen=True)
class VelocityTask:
    """Locomotion: run forward at ``velocity`` (m/s along x)."""

    velocity: float

    def array(self) -> np.ndarray:
        return np.asarray([self.velocity], dtype=np.float64)


@dataclass(frozen=True)
class DirectionTask:
    """Locomotion: run along ``direction`` * x, with ``direction`` in {-1, +1}."""

    direction: float

    def __post_init__(self) -> None:
        if self.direction not in (-1.0, 1.0):
            raise ValueError(f"direction must be +1 or -1, got {self.direction}")

    def array(self) -> np.ndarray:
        return np.asarray([self.direction], dtype=np.float64)


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


def check_task(task: Any, task_type: type, env_name: str) -> Any:
    """``task`` if it belongs to the family, else a ``TypeError`` that says what is expected."""
    if not isinstance(task, task_type):
        raise TypeError(
            f"{env_name} expects a {task_type.__name__}, got {type(task).__name__} ({task!r}); "
            f"draw tasks for this family with its sample_tasks(n, rng)"
        )
    return task


def task_array(tasks: Sequence[Any], task_type: type, env_name: str) -> np.ndarray:
    """The tasks' numbers stacked: ``[B, k]``; every task is checked to be of the family."""
    if len(tasks) == 0:
        raise ValueError(f"{env_name}: got an empty list of tasks")
    return np.stack([check_task(t, task_type, env_name).array() for t in tasks])


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
