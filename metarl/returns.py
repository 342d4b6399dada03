"""Discounted returns, GAE and advantage normalisation: pure, padding-aware functions.

Time is the leading dimension: ``rewards, values, mask [T, ...]`` (any trailing batch dims,
e.g. ``[T, E]`` for one task under ``vmap`` or ``[T, N, E]`` for a meta-batch). ``mask`` is 1.0
for steps that happened; padded steps contribute nothing and get 0. An episode that ends at the
horizon is treated as terminal (no bootstrap), as in the MAML-RL reference code.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(rewards: Tensor, mask: Tensor, name: str = "mask") -> None:
    if rewards.shape != mask.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and {name} {tuple(mask.shape)} differ")


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """``R_t = sum_k gamma^k r_{t+k}`` within each episode: ``[T, ...] -> [T, ...]``."""
    _check(rewards, mask)
    r = rewards * mask
    out = []
    running = torch.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        running = r[t] + gamma * running * mask[t]
        out.append(running)
    return torch.stack(out[::-1])


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimation (Schulman et al., 2016): ``[T, ...] -> [T, ...]``.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` with ``V`` zero past the last step of an episode;
    ``A_t = delta_t + gamma lam A_{t+1}``. ``lam = 1`` gives ``R_t - V_t``.
    """
    _check(rewards, mask)
    _check(rewards, values, "values")
    v = values * mask
    v_next = torch.cat([v[1:], torch.zeros_like(v[:1])])
    deltas = (rewards + gamma * v_next - v) * mask
    out = []
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * running * mask[t]
        out.append(running)
    return torch.stack(out[::-1])


def normalize(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / (std + eps)`` over the steps that happened (all dims); padding stays 0.

    Call it per task (under ``vmap``) to normalise each task's advantages separately, as the
    MAML-RL reference does.
    """
    _check(x, mask)
    n = mask.sum().clamp(min=1.0)
    mean = (x * mask).sum() / n
    var = ((x - mean).square() * mask).sum() / n
    return (x - mean) / (var.sqrt() + eps) * mask
