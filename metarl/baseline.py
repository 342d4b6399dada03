"""The linear feature baseline of the MAML-RL literature (Duan et al., 2016; rllab), batched
over tasks: a ridge regression of each task's returns on time-and-observation features.

Features per step: ``clip(obs, -10, 10)``, its square, ``t, t^2, t^3`` with ``t = step / 100``,
and 1 (rllab clips the observations; so do we). Padded steps are zeroed out of the fit.
"""

from __future__ import annotations

import torch
from torch import Tensor


def features(observations: Tensor, mask: Tensor) -> Tensor:
    """``observations [T, ..., obs], mask [T, ...] -> [T, ..., 2 obs + 4]`` (zero where padded)."""
    o = observations.clamp(-10.0, 10.0)
    T = o.shape[0]
    t = torch.arange(T, dtype=o.dtype, device=o.device) / 100.0
    t = t.reshape(T, *([1] * (o.dim() - 1))).expand(*o.shape[:-1], 1)
    f = torch.cat([o, o.square(), t, t.square(), t**3, torch.ones_like(t)], -1)
    return f * mask.unsqueeze(-1)


def fit(
    feats: Tensor, returns: Tensor, reg: float = 1e-5, attempts: int = 5
) -> Tensor:
    """Ridge weights per task: ``feats [N, M, d], returns [N, M] -> weights [N, d]``.

    Solves ``(F^T F + reg I) w = F^T R`` (rllab hands it to ``numpy.linalg.lstsq``; the system
    is square and, with ``reg > 0``, nonsingular, so an LU solve gives the same answer to
    round-off); a task whose solution is not finite, or a batch the solver refuses as
    singular, is refit with ``reg`` ten times larger (rllab's rule), up to ``attempts`` times.
    """
    if feats.dim() != 3 or returns.shape != feats.shape[:2]:
        raise ValueError(
            f"fit wants feats [N, M, d] and returns [N, M], got {tuple(feats.shape)} "
            f"and {tuple(returns.shape)}"
        )
    if not (torch.isfinite(feats).all() and torch.isfinite(returns).all()):
        raise FloatingPointError(
            "linear baseline: the observations or returns contain NaN/inf; "
            "check the rewards and observations the sampler returned"
        )
    d = feats.shape[-1]
    ft = feats.transpose(1, 2)
    gram = ft @ feats
    rhs = ft @ returns.unsqueeze(-1)
    eye = torch.eye(d, dtype=feats.dtype, device=feats.device)
    weights = torch.full((feats.shape[0], d), float("nan"), dtype=feats.dtype, device=feats.device)
    for _ in range(attempts):
        try:
            # Not torch.linalg.lstsq: its CPU default (MKL's gelsy) answers differently from call
            # to call in the last bits, and rollouts after adaptation amplify them.
            w = torch.linalg.solve(gram + reg * eye, rhs).squeeze(-1)
        except RuntimeError:  # singular to working precision: regularise more
            reg *= 10
            continue
        bad = ~torch.isfinite(weights).all(-1)
        weights = torch.where(bad.unsqueeze(-1), w, weights)
        if torch.isfinite(weights).all():
            return weights
        reg *= 10
    raise FloatingPointError(
        f"linear baseline: no finite fit even with regularisation {reg / 10:g}; "
        "the features are too ill-conditioned (rescale the observations)"
    )


def fit_predict(observations: Tensor, returns: Tensor, mask: Tensor, reg: float = 1e-5) -> Tensor:
    """Fit per task and predict: ``observations [T, N, E, obs], returns, mask [T, N, E]``
    ``-> values [T, N, E]`` (0 where padded). Fit on detached data (the baseline is a constant)."""
    if observations.dim() != 4 or returns.shape != mask.shape or returns.dim() != 3:
        raise ValueError(
            f"fit_predict wants observations [T, N, E, obs] and returns, mask [T, N, E]; got "
            f"{tuple(observations.shape)}, {tuple(returns.shape)}, {tuple(mask.shape)}"
        )
    T, N, E, _ = observations.shape
    # float64 as in rllab: t^3 and obs^2 columns make the normal equations ill-conditioned.
    mask64 = mask.detach().double()
    f = features(observations.detach().double(), mask64)  # [T, N, E, d]
    f_task = f.permute(1, 0, 2, 3).reshape(N, T * E, -1)
    r_task = (returns.detach().double() * mask64).permute(1, 0, 2).reshape(N, T * E)
    w = fit(f_task, r_task, reg)  # [N, d]
    return torch.einsum("tned,nd->tne", f, w).to(returns.dtype)
