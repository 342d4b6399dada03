"""Action distributions of the policies, as pure functions of a policy's forward outputs.

A policy's ``forward(obs)`` returns plain tensors (so one module runs with per-task params under
``torch.func.vmap``); its ``distribution`` object reads them: :data:`GAUSSIAN` takes
``(mean, log_std)``, :data:`CATEGORICAL` takes ``(logits,)``. Each gives the log-probability,
sampling, entropy and KL that MAML-TRPO needs (Finn et al., 2017; Schulman et al., 2015).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

_LOG_2PI = math.log(2 * math.pi)

Outputs = tuple[Tensor, ...]


class Distribution(Protocol):
    name: str

    def log_prob(self, outputs: Outputs, actions: Tensor) -> Tensor:
        """``log pi(actions)``: ``[...]``."""
        ...

    def sample(self, outputs: Outputs, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Actions drawn with ``generator`` and their log-probabilities."""
        ...

    def entropy(self, outputs: Outputs) -> Tensor:
        ...

    def kl(self, old: Outputs, new: Outputs) -> Tensor:
        """``KL(old || new)``: ``[...]``."""
        ...


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


class Gaussian:
    """Diagonal Gaussian over ``[..., act]`` actions; outputs ``(mean, log_std)``."""

    name = "gaussian"

    def log_prob(self, outputs: Outputs, actions: Tensor) -> Tensor:
        return gaussian_log_prob(outputs[0], outputs[1], actions)

    def sample(self, outputs: Outputs, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mean, log_std = outputs
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        actions = mean + torch.exp(log_std) * noise
        # log N(a; m, s) with z = noise exactly: skips recomputing (a - m) / s.
        return actions, (-0.5 * noise.square() - log_std - 0.5 * _LOG_2PI).sum(-1)

    def entropy(self, outputs: Outputs) -> Tensor:
        return gaussian_entropy(outputs[1])

    def kl(self, old: Outputs, new: Outputs) -> Tensor:
        return gaussian_kl(old[0], old[1], new[0], new[1])


class Categorical:
    """Categorical over ``n`` actions (integer actions ``[...]``); outputs ``(logits,)``."""

    name = "categorical"

    def log_prob(self, outputs: Outputs, actions: Tensor) -> Tensor:
        return categorical_log_prob(outputs[0], actions)

    def sample(self, outputs: Outputs, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        (logits,) = outputs
        probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
        actions = torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])
        return actions, categorical_log_prob(logits, actions)

    def entropy(self, outputs: Outputs) -> Tensor:
        return categorical_entropy(outputs[0])

    def kl(self, old: Outputs, new: Outputs) -> Tensor:
        return categorical_kl(old[0], new[0])


GAUSSIAN = Gaussian()
CATEGORICAL = Categorical()
