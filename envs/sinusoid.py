"""Sinusoid regression tasks (Finn et al., 2017, Section 5.1).

A task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5.0]`` and phase ``phi ~ U[0, pi]``;
inputs ``x ~ U[-5, 5]``. Each task gives K support points and a query set from the same task.
The network is an MLP 1-40-40-1 with ReLU, the loss the mean squared error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from metarl.config import check, check_hidden, check_interval
from metarl.models import mlp
from metarl.params import Params
from metarl.plots import plot_fits
from metarl.stats import Metric
from metarl.tasks import Forward, TaskBatch


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

    metrics: ClassVar[tuple[Metric, ...]] = (Metric("mse"),)

    def __post_init__(self) -> None:
        check(isinstance(self.shots, int) and self.shots > 0,
              f"shots (K) must be a positive integer, got {self.shots!r}")
        check(isinstance(self.query, int) and self.query > 0,
              f"query must be a positive integer, got {self.query!r}")
        for name in ("amplitude", "phase", "x_range"):
            check_interval(name, getattr(self, name))
        check_hidden(self.hidden)

    @property
    def tag(self) -> str:
        return f"sinusoid-k{self.shots}"

    def build(self) -> Sinusoid:
        return self

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train"
               ) -> TaskBatch:
        """``num_tasks`` tasks: support ``(x [N, K, 1], y [N, K, 1])``, query likewise with Q
        points, info [N, 2] = (amplitude, phase).

        Every split draws from the same distribution; held-out tasks come from a separate seed.
        """
        check(split in ("train", "test"), f"unknown split {split!r}; use 'train' or 'test'")
        amp = _uniform(self.amplitude, (num_tasks, 1, 1), generator)
        phase = _uniform(self.phase, (num_tasks, 1, 1), generator)
        x = _uniform(self.x_range, (num_tasks, self.shots + self.query, 1), generator)
        y = self.function(x, amp, phase)
        k = self.shots
        return TaskBatch((x[:, :k], y[:, :k]), (x[:, k:], y[:, k:]),
                         info=torch.cat([amp, phase], -1).view(num_tasks, 2))

    @staticmethod
    def function(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
        return amplitude * torch.sin(x - phase)

    def model(self) -> nn.Module:
        return mlp((1, *self.hidden, 1), "relu")

    def loss(self, forward: Forward, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        """Mean squared error of the predictions at ``x`` against ``y``."""
        x, y = data
        return ((forward(params, x) - y) ** 2).mean()

    def evaluate(self, forward: Forward, params: Params, data: tuple[Tensor, Tensor]
                 ) -> dict[str, Tensor]:
        return {"mse": self.loss(forward, params, data)}

    def figure(self, path: Path, tasks: TaskBatch,
               predictors: Mapping[str, Callable[[Any, Tensor, tuple[int, ...]],
                                                 dict[int, Tensor]]]) -> Path:
        """The first task's fits before and after 1 and 10 steps, one panel per method, as
        Finn et al.'s Figure 2; ``predictors[method](support, x, steps)`` adapts on
        ``support`` and predicts at ``x`` after each number of steps."""
        x = torch.linspace(*self.x_range, 200, device=tasks.info.device).unsqueeze(-1)
        amp, phase = tasks.info[0]
        support = (tasks.support[0][0], tasks.support[1][0])
        predictions = {label: {s: y.squeeze(-1).cpu() for s, y in
                               predict(support, x, (0, 1, 10)).items()}
                       for label, predict in predictors.items()}
        return plot_fits(path, x.squeeze(-1).cpu(),
                         self.function(x, amp, phase).squeeze(-1).cpu(),
                         (support[0].squeeze(-1).cpu(), support[1].squeeze(-1).cpu()),
                         predictions, f"{self.tag}: amplitude {amp:.2f}, phase {phase:.2f}")


def _uniform(bounds: tuple[float, float], shape: tuple[int, ...], generator: torch.Generator
             ) -> Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=generator)
