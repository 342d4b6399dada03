"""Policies as ``nn.Module``s whose forward returns plain tensors, so that one module runs
with per-task params under ``torch.func.vmap`` + ``functional_call``; and pure helpers for the
log-probability, entropy and KL of their distributions (as used by MAML-TRPO, Finn et al., 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metarl.models import mlp


class GaussianMLPPolicy(nn.Module):
    """Diagonal Gaussian with an MLP mean and a state-independent ``log_std`` parameter.

    ``forward(obs [..., obs]) -> (mean [..., act], log_std [..., act])``; ``log_std`` is
    broadcast to the mean's shape and floored at ``log(min_std)`` (the reference code's clamp).
    """

    distribution = "gaussian"

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

    distribution = "categorical"

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.logits = mlp([obs_dim, *hidden_sizes, n_actions], nonlinearity)

    def forward(self, obs: Tensor) -> tuple[Tensor]:
        return (self.logits(obs),)


_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """``log N(actions; mean, exp(log_std)^2)``, summed over actions: ``[..., act] -> [...]``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian: ``[..., act] -> [...]``."""
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """``KL(p || q)`` of diagonal Gaussians, summed over actions: ``[..., act] -> [...]``."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q).square()) / (2 * var_q) - 0.5
    return kl.sum(-1)


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """``logits [..., n], actions [...] (int) -> [...]``."""
    logp = torch.log_softmax(logits, -1)
    return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def categorical_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """``KL(p || q)``: ``[..., n] -> [...]``."""
    logp, logq = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def log_prob(distribution: str, outputs: tuple[Tensor, ...], actions: Tensor) -> Tensor:
    """Log-probability of ``actions`` under a policy's forward ``outputs``."""
    if distribution == "gaussian":
        return gaussian_log_prob(outputs[0], outputs[1], actions)
    if distribution == "categorical":
        return categorical_log_prob(outputs[0], actions)
    raise ValueError(f"unknown distribution {distribution!r}; use 'gaussian' or 'categorical'")


def sample_actions(
    distribution: str, outputs: tuple[Tensor, ...], generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Draw actions from forward ``outputs`` with ``generator``: ``(actions, log_probs)``."""
    if distribution == "gaussian":
        mean, log_std = outputs
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        actions = mean + torch.exp(log_std) * noise
        # log N(a; m, s) with z = noise exactly: skips recomputing (a - m) / s.
        logp = (-0.5 * noise.square() - log_std - 0.5 * _LOG_2PI).sum(-1)
        return actions, logp
    if distribution == "categorical":
        (logits,) = outputs
        probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
        actions = torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])
        return actions, categorical_log_prob(logits, actions)
    raise ValueError(f"unknown distribution {distribution!r}; use 'gaussian' or 'categorical'")
