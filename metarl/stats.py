"""Evaluation metrics and the summary statistics of evaluation tables."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def mean_ci95(values: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """Mean and half-width of the normal 95% interval of ``values`` along ``dim``."""
    values = values.double()
    n = values.shape[dim]
    mean = values.mean(dim)
    if n < 2:
        return mean, torch.full_like(mean, math.nan)
    return mean, 1.96 * values.std(dim, unbiased=True) / math.sqrt(n)


@dataclass(frozen=True)
class Metric:
    """An evaluation metric. Its value on one task is a scalar, or statistics such as n-gram
    counts; ``aggregate`` reduces the values of ``N`` tasks, ``[N, ...]``, over the task
    dimension to ``(value, 95% half-width)``."""

    name: str
    higher_is_better: bool = False
    aggregate: Callable[[Tensor], tuple[Tensor, Tensor]] = mean_ci95
    label: str = ""
    """How tables and plots name it (default: ``name``)."""
    decimals: tuple[int, int] = (4, 3)
    """Decimals of the value and of its interval in printed tables."""

    @property
    def title(self) -> str:
        return self.label or self.name
