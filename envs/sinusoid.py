"""Sinusoid regression tasks (Finn et al., 2017, Section 5.1).

A task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5.0]`` and phase ``phi ~ U[0, pi]``;
inputs ``x ~ U[-5, 5]``. Each task gives K support points and a query set from the same task.
The network is an MLP 1-40-40-1 with ReLU, the loss the mean squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metarl.config import check, check_positive
from metarl.models import mlp
from metarl.tasks import TaskBatch


@dataclass(frozen=True)
class Sinusoid:
    """Sinusoid task family; also its own config (every field is a CLI option)."""

    shots: int = 10
    """K: support points per task."""
    query: int = 10
    """Query points per task for the outer loss and for evaluation."""
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    hidden: tuple[int, ...] = (40, 40)

    name = "sinusoid"
    metric_name = "mse"
    higher_is_better = False

    def __post_init__(self) -> None:
        check(isinstance(self.shots, int) and self.shots > 0,
              f"shots (K) must be a positive integer, got {self.shots!r}")
        check(isinstance(self.query, int) and self.query > 0,
              f"query must be a positive integer, got {self.query!r}")
        for name in ("amplitude", "phase", "x_range"):
            lo, hi = getattr(self, name)
            check(lo <= hi, f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        for h in self.hidden:
            check_positive("hidden layer size", h)

    @property
    def tag(self) -> str:
        return f"sinusoid-k{self.shots}"

    def build(self) -> Sinusoid:
        return self

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train"
               ) -> TaskBatch:
        """``num_tasks`` tasks; x [N, K, 1], y [N, K, 1]; info [N, 2] = (amplitude, phase).

        Every split draws from the same distribution; held-out tasks come from a separate seed.
        """
        check(split in ("train", "test"), f"unknown split {split!r}; use 'train' or 'test'")
        amp = _uniform(self.amplitude, (num_tasks, 1, 1), generator)
        phase = _uniform(self.phase, (num_tasks, 1, 1), generator)
        x = _uniform(self.x_range, (num_tasks, self.shots + self.query, 1), generator)
        y = self.function(x, amp, phase)
        k = self.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:],
                         info=torch.cat([amp, phase], -1).view(num_tasks, 2))

    @staticmethod
    def function(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
        return amplitude * torch.sin(x - phase)

    def model(self) -> nn.Module:
        return mlp((1, *self.hidden, 1), "relu")

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return ((outputs - targets) ** 2).mean()

    metric = loss


def _uniform(bounds: tuple[float, float], shape: tuple[int, ...], generator: torch.Generator
             ) -> Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=generator)
