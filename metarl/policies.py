"""Policies as ``nn.Module``s whose forward returns plain tensors, so that one module runs with
per-task params under ``torch.func.vmap`` + ``functional_call``; each names the
:mod:`~metarl.distributions` object that reads its outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from metarl.distributions import CATEGORICAL, GAUSSIAN, Distribution
from metarl.models import mlp


class GaussianMLPPolicy(nn.Module):
    """Diagonal Gaussian with an MLP mean and a state-independent ``log_std`` parameter.

    ``forward(obs [..., obs]) -> (mean [..., act], log_std [..., act])``; ``log_std`` is
    broadcast to the mean's shape and floored at ``log(min_std)`` (the reference code's clamp).
    """

    distribution: ClassVar[Distribution] = GAUSSIAN

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        nonlinearity: str = "tanh",
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.mean = mlp([obs_dim, *hidden_sizes, act_dim], nonlinearity)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(obs)
        log_std = self.log_std.clamp(min=self.min_log_std).expand_as(mean)
        return mean, log_std


class CategoricalMLPPolicy(nn.Module):
    """Categorical over ``n_actions`` with MLP logits: ``forward(obs) -> (logits [..., n],)``."""

    distribution: ClassVar[Distribution] = CATEGORICAL

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int] = (64, 64),
                 nonlinearity: str = "tanh") -> None:
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.logits = mlp([obs_dim, *hidden_sizes, n_actions], nonlinearity)

    def forward(self, obs: Tensor) -> tuple[Tensor]:
        return (self.logits(obs),)


def make_policy(obs_dim: int, act_dim: int, hidden: Sequence[int], nonlinearity: str,
                discrete: bool = False) -> nn.Module:
    """A Gaussian policy for ``act_dim`` continuous actions, or a categorical one over
    ``act_dim`` discrete actions."""
    if discrete:
        return CategoricalMLPPolicy(obs_dim, act_dim, tuple(hidden), nonlinearity)
    return GaussianMLPPolicy(obs_dim, act_dim, tuple(hidden), nonlinearity)
