"""Summary statistics for evaluation tables."""

from __future__ import annotations

import math

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
